"""The host-deploy lock and audit trail, kept off the hosts: in SSM Parameter Store.

Hosts in an Auto Scaling Group come and go, so neither may live on a host.

- Lock: `/<stack>/_deploy/<env>/lock`, created with `Overwrite=False` (SSM's only
  compare-and-set: exactly one writer wins). Its value names the holder (who, where,
  pid, version, since). Released on exit; a lock older than its timeout is stale and
  may be taken over (a crashed deployer does not block the team forever).
- Audit: `/<stack>/_deploy/<env>/audit`, overwritten with one JSON line per deploy
  (who, version, when, result). SSM keeps every version of a parameter:
  `get_parameter_history` is the log (the last 100 deploys), readable by anyone with
  ssm:GetParameterHistory on the path, with no extra service, and moto implements it
  (CloudWatch Logs needs a log group and agent; an S3 object would need a
  read-modify-write append).

Both live OUTSIDE the environment's SSM prefix (`/<stack>/<env>/`), so the app's loader
(`ssm_env.load_env`) never sees them. `_deploy` cannot clash with an environment name
(those may not contain '_').
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.errors import HostsError
from jobtory_stack.spec.constants import LOCK_STALE_AFTER

AUDIT_HISTORY = 100  # SSM keeps the last 100 versions of a parameter


class LockHeld(HostsError):
    """Someone else holds the deploy lock; the message names them."""

    def __init__(self, holder: LockInfo, name: str) -> None:
        age = max(time.time() - holder.since, 0.0)
        super().__init__(
            f"another deploy holds the lock {name}: {holder.owner} "
            f"(version {holder.version or '?'}, since {iso(holder.since)}, {age:.0f}s ago); "
            "wait for it, or if it crashed: `deploy.py hosts --unlock` after checking"
        )
        self.holder = holder


@dataclass(frozen=True)
class LockInfo:
    owner: str  # user@host pid N
    since: float  # epoch seconds
    version: str
    token: str  # random: identifies this holder on release

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        try:
            data = json.loads(text)
            return cls(
                owner=str(data["owner"]),
                since=float(data["since"]),
                version=str(data.get("version", "")),
                token=str(data.get("token", "")),
            )
        except (ValueError, KeyError, TypeError):
            return cls(
                owner=f"unreadable lock value {text[:60]!r}", since=0.0, version="", token=""
            )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whoami() -> str:
    user = os.environ.get("JOBTORY_DEPLOYER") or _login()
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def parameter_names(stack: str, env: str) -> tuple[str, str]:
    """(lock, audit) parameter names for an environment."""
    base = f"/{stack}/_deploy/{env}"
    return f"{base}/lock", f"{base}/audit"


class DeployLock:
    """`with DeployLock(ssm, name, version):` holds the lock for the block (or raises
    LockHeld naming the holder)."""

    def __init__(
        self,
        ssm: Any,
        name: str,
        version: str,
        stale_after: float = LOCK_STALE_AFTER,
        owner: str | None = None,
    ) -> None:
        self.ssm = ssm
        self.name = name
        self.stale_after = stale_after
        self.info = LockInfo(
            owner=owner or whoami(),
            since=time.time(),
            version=version,
            token=secrets.token_hex(8),
        )
        self.held = False

    def _put(self) -> bool:
        try:
            self.ssm.put_parameter(
                Name=self.name,
                Value=self.info.to_json(),
                Type="String",
                Overwrite=False,
                Description="jobtory host deploy lock (deploy.py hosts)",
            )
        except ClientError as exc:
            if error_code(exc) == "ParameterAlreadyExists":
                return False
            raise
        return True

    def holder(self) -> LockInfo | None:
        try:
            value = self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return LockInfo.from_json(str(value))

    def acquire(self) -> LockInfo | None:
        """Take the lock. Returns the stale holder it replaced, if any; raises LockHeld."""
        if self._put():
            self.held = True
            return None
        current = self.holder()
        if current is None:  # released between our put and get: try once more
            if self._put():
                self.held = True
                return None
            current = self.holder() or LockInfo("unknown", time.time(), "", "")
        if time.time() - current.since <= self.stale_after:
            raise LockHeld(current, self.name)
        # Stale: delete it only if it is still the same holder, then race like everyone.
        again = self.holder()
        if again is not None and again.token == current.token:
            self._delete()
        if self._put():
            self.held = True
            return current
        raise LockHeld(self.holder() or current, self.name)

    def release(self) -> None:
        if not self.held:
            return
        current = self.holder()
        if current is not None and current.token == self.info.token:
            self._delete()
        self.held = False

    def _delete(self) -> None:
        try:
            self.ssm.delete_parameter(Name=self.name)
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def force_unlock(ssm: Any, name: str) -> LockInfo | None:
    """Remove the lock whoever holds it; returns the holder it removed."""
    lock = DeployLock(ssm, name, version="")
    holder = lock.holder()
    if holder is not None:
        lock._delete()
    return holder


@dataclass(frozen=True)
class AuditRecord:
    who: str
    env: str
    version: str
    started: str  # ISO 8601 UTC
    seconds: float
    result: str  # "ok", "no change" or "failed: <reason>"
    hosts: list[str]
    changed_operations: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def append_audit(ssm: Any, name: str, record: AuditRecord) -> None:
    """One line per deploy: a new version of the audit parameter (SSM keeps history)."""
    value = record.to_json()
    if len(value) > 4000:  # a standard parameter holds 4 KB
        short = AuditRecord(**{**asdict(record), "result": record.result[:1500]})
        value = short.to_json()[:4000]
    try:
        ssm.put_parameter(
            Name=name,
            Value=value,
            Type="String",
            Overwrite=True,
            Description="jobtory host deploys: one JSON line per version (parameter history)",
        )
    except ClientError as exc:
        if error_code(exc) != "ParameterMaxVersionLimitExceeded":
            raise
        # The oldest version is labelled (kept on purpose); start a fresh history.
        ssm.delete_parameter(Name=name)
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=False)


def read_audit(ssm: Any, name: str) -> list[dict[str, Any]]:
    """Every audit line still in SSM's history, oldest first."""
    lines: list[dict[str, Any]] = []
    try:
        paginator = ssm.get_paginator("get_parameter_history")
        for page in paginator.paginate(Name=name):
            for item in page["Parameters"]:
                try:
                    lines.append(json.loads(item["Value"]))
                except ValueError:
                    lines.append({"raw": item["Value"]})
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return []
        raise
    return lines
