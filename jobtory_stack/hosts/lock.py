"""The host-deploy lock and audit trail, kept off the hosts: in SSM Parameter Store.

Hosts in an Auto Scaling Group come and go, so neither may live on a host.

- Lock: `/<stack>/_deploy/<env>/lock`, created with `Overwrite=False` (SSM's only
  compare-and-set: exactly one writer wins). Its value names the holder (who, where,
  pid, version, since) and its `heartbeat`, renewed every HEARTBEAT_EVERY seconds while
  the deploy runs. Released on exit; a lock whose heartbeat is older than the timeout is
  stale and may be taken over (a crashed deployer does not block the team forever; a
  long deploy that is still alive keeps its lock).
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
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.errors import HostsError
from jobtory_stack.spec.constants import LOCK_STALE_AFTER

AUDIT_HISTORY = 100  # SSM keeps the last 100 versions of a parameter
HEARTBEAT_EVERY = 30.0  # seconds; at most a third of the timeout (see DeployLock.every)


class LockHeld(HostsError):
    """Someone else holds the deploy lock; the message names them."""

    def __init__(self, holder: LockInfo, name: str) -> None:
        age = max(time.time() - holder.since, 0.0)
        beat = max(time.time() - holder.alive_at, 0.0)
        super().__init__(
            f"another deploy holds the lock {name}: {holder.owner} "
            f"(version {holder.version or '?'}, since {iso(holder.since)}, {age:.0f}s ago; "
            f"last heartbeat {beat:.0f}s ago); "
            "wait for it, or if it crashed: `deploy.py hosts --unlock` after checking"
        )
        self.holder = holder


@dataclass(frozen=True)
class LockInfo:
    owner: str  # user@host pid N
    since: float  # epoch seconds
    version: str
    token: str  # random: identifies this holder on release
    heartbeat: float = 0.0  # epoch seconds of the holder's last renewal; 0: none (old locks)

    @property
    def alive_at(self) -> float:
        """When the holder last showed it is alive: its heartbeat, else (an older
        deployer's lock) when it took the lock."""
        return self.heartbeat or self.since

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
                heartbeat=float(data.get("heartbeat", 0.0)),
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
    LockHeld naming the holder), renewing its heartbeat from a background thread."""

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
        now = time.time()
        self.info = LockInfo(
            owner=owner or whoami(),
            since=now,
            version=version,
            token=secrets.token_hex(8),
            heartbeat=now,
        )
        self.held = False
        self.lost: str | None = None  # why this deploy no longer holds the lock
        self.last_error: str | None = None  # the last heartbeat that failed (retried)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def every(self) -> float:
        """Seconds between heartbeats: several fit in the timeout, so one failed renewal
        (a network blip) never makes a live deploy's lock stale."""
        return min(HEARTBEAT_EVERY, self.stale_after / 3)

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

    def stale(self, holder: LockInfo) -> bool:
        return time.time() - holder.alive_at > self.stale_after

    def acquire(self) -> LockInfo | None:
        """Take the lock. Returns the stale holder it replaced, if any; raises LockHeld."""
        now = time.time()
        self.info = replace(self.info, since=now, heartbeat=now)
        if self._put():
            self.held = True
            return None
        current = self.holder()
        if current is None:  # released between our put and get: try once more
            if self._put():
                self.held = True
                return None
            current = self.holder() or LockInfo("unknown", time.time(), "", "")
        if not self.stale(current):
            raise LockHeld(current, self.name)
        # Stale: delete it only if it is still the same value (same holder, and no
        # heartbeat since we looked: a holder that was only slow is alive), then race.
        again = self.holder()
        if again == current:
            self._delete()
        if self._put():
            self.held = True
            return current
        raise LockHeld(self.holder() or current, self.name)

    def beat(self) -> bool:
        """Renew the heartbeat, only while the lock is still ours (compare, then write:
        SSM has no conditional overwrite; someone else can only have taken it after our
        heartbeat was `stale_after` old, which the interval rules out while we run).
        False when the lock is gone or someone else's (`lost` says why)."""
        current = self.holder()
        if current is None or current.token != self.info.token:
            who = "nobody (it was removed)" if current is None else current.owner
            self.lost = f"the deploy lock {self.name} is now held by {who}"
            return False
        info = replace(self.info, heartbeat=time.time())
        self.ssm.put_parameter(Name=self.name, Value=info.to_json(), Type="String", Overwrite=True)
        self.info = info
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.beat():
                    return
                self.last_error = None
            except (BotoCoreError, ClientError) as exc:  # retried at the next beat
                self.last_error = str(exc).splitlines()[0]

    def start_heartbeat(self) -> None:
        """Renew the lock from a daemon thread until release()."""
        if self._thread is None and self.held:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._heartbeat, name=f"heartbeat {self.name}", daemon=True
            )
            self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # one SSM call at most
            self._thread = None

    def check(self) -> None:
        """Raise when the heartbeat found the lock taken: stop before the next host."""
        if self.lost:
            raise HostsError(f"{self.lost}; stopping before the next host")

    def release(self) -> None:
        self.stop_heartbeat()
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
        self.start_heartbeat()
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
