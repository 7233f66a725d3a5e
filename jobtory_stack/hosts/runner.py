"""Running pyinfra for one host: the plan (dry run) or the deploy, its log kept in a file.

pyinfra runs in a child process (`python -m jobtory_stack.hosts.pyinfra_run`) that drives
pyinfra's Python API and writes a JSON result read from pyinfra's own state: which
operations changed the host (or would), whether the run failed and why. pyinfra's
output is only for people (the log). A result that cannot be read is an error that
names the log, never "no change".
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.settings import LOG_DIR, REPO

PYINFRA_DIR = REPO / "pyinfra"
DEPLOY_FILE = PYINFRA_DIR / "deploy.py"
CHILD = "jobtory_stack.hosts.pyinfra_run"


@dataclass(frozen=True)
class RunResult:
    ok: bool
    changed: int  # operations that changed the host (the plan: that would change it)
    seconds: float
    reasons: tuple[str, ...]  # why it failed: the host's `jobtory: ... failed` lines first
    log: Path
    operations: tuple[str, ...] = ()  # the changed operations' names


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def read_result(path: Path, host: str, dry: bool, log: Path) -> tuple[bool, list[str], list[str]]:
    """The child's result for `host`: (ok, changed operations, reasons). Anything else
    (no file, not JSON, another host or kind of run, a failure without a reason) is a
    HostsError naming the log: a result nobody can read must not pass for "no change"."""
    what = "plan" if dry else "deploy"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HostsError(f"the pyinfra {what} left no result; see {log}") from None
    except (OSError, ValueError) as exc:
        raise HostsError(f"unreadable pyinfra {what} result ({exc}); see {log}") from None
    valid = (
        isinstance(data, dict)
        and data.get("host") == host
        and data.get("dry") is dry
        and isinstance(data.get("ok"), bool)
        and _strings(data.get("changed"))
        and _strings(data.get("reasons"))
        and (data["ok"] or data["reasons"])
    )
    if not valid:
        raise HostsError(f"the pyinfra {what} result {path} is not one for {host}; see {log}")
    return data["ok"], data["changed"], data["reasons"]


def _paths(log_dir: Path, host: str, what: str) -> tuple[Path, Path]:
    """A new log and its (removed: never read an earlier run's) JSON result."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = log_dir / f"hosts-{stamp}-{host}{what}.log"
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    return log, result


def _command(inventory: Path, deploy_file: Path, host: str, data: Mapping[str, str]) -> list[str]:
    cmd = [sys.executable, "-m", CHILD, str(inventory), str(deploy_file), host]
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
    return cmd


def _env(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}


def _checked(result: Path, host: str, dry: bool, log: Path, code: int, seconds: float) -> RunResult:
    ok, changed, reasons = read_result(result, host, dry, log)
    if ok != (code == 0):
        raise HostsError(
            f"pyinfra exited {code} but its result says {'ok' if ok else 'failed'}; see {log}"
        )
    return RunResult(ok, len(changed), seconds, tuple(reasons), log, tuple(changed))


def run_pyinfra(
    inventory: Path,
    host: str,
    data: Mapping[str, str],
    dry: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    deploy_file: Path = DEPLOY_FILE,
    log_dir: Path = LOG_DIR,
) -> RunResult:
    """Run `deploy_file` on `host` of `inventory` (dry: only plan), its output in a log."""
    log, result = _paths(log_dir, host, "-plan" if dry else "")
    cmd = _command(inventory, deploy_file, host, data)
    cmd += ["--result", str(result), *(["--dry"] if dry else [])]
    started = time.monotonic()
    with log.open("w") as out:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=_env(env),
                check=False,
            )
        except subprocess.TimeoutExpired:
            reason = f"jobtory: pyinfra timed out after {timeout:.0f}s"
            out.write(f"\n{reason}\n")
            return RunResult(False, 0, time.monotonic() - started, (reason,), log)
    return _checked(result, host, dry, log, proc.returncode, time.monotonic() - started)


class HostRun:
    """One host's pyinfra process for a whole deploy, as the pyinfra CLI runs without -y:
    `plan()` connects and diffs every operation, then the process waits; `deploy()` lets
    that same prepared state execute; `close()` ends it with nothing changed. One
    process, one connection and one prepare per host instead of two of each."""

    def __init__(
        self,
        inventory: Path,
        host: str,
        data: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        timeout: float = 1800,
        deploy_file: Path = DEPLOY_FILE,
        log_dir: Path = LOG_DIR,
    ) -> None:
        self.host = host
        self.timeout = timeout
        self.log, self.result = _paths(log_dir, host, "")
        self.plan_result = self.log.with_name(self.log.stem + "-plan.json")
        self.plan_result.unlink(missing_ok=True)
        self._cmd = _command(inventory, deploy_file, host, data)
        self._cmd += ["--result", str(self.result), "--plan-result", str(self.plan_result)]
        self._env = _env(env)
        self._proc: subprocess.Popen[str] | None = None
        self._started = 0.0

    def plan(self) -> RunResult:
        """Start the process and wait for its plan: the child writes to a pipe once the
        plan is written (or the pipe closes because the child ended), then reads stdin."""
        self._started = time.monotonic()
        planned, child_end = os.pipe()
        try:
            with self.log.open("w") as out:
                self._proc = subprocess.Popen(
                    [*self._cmd, "--planned-fd", str(child_end)],
                    cwd=REPO,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    text=True,
                    pass_fds=(child_end,),
                )
            os.close(child_end)  # the child holds the only write end now
            ready, _, _ = select.select([planned], [], [], self.timeout)
        finally:
            os.close(planned)
        if not ready:
            self.close()
            reason = f"jobtory: the pyinfra plan timed out after {self.timeout:.0f}s"
            return RunResult(False, 0, self.timeout, (reason,), self.log)
        seconds = time.monotonic() - self._started
        ok, changed, reasons = read_result(self.plan_result, self.host, True, self.log)
        if not ok:
            self.close()
        return RunResult(ok, len(changed), seconds, tuple(reasons), self.log, tuple(changed))

    def deploy(self) -> RunResult:
        """Execute the planned state; the result once the process has ended."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise HostsError(f"{self.host}: deploy() before plan()")
        started = time.monotonic()
        try:
            proc.stdin.write("go\n")
            proc.stdin.close()
            code = proc.wait(timeout=self.timeout)
        except (BrokenPipeError, subprocess.TimeoutExpired) as exc:
            proc.kill()
            proc.wait()
            reason = (
                f"jobtory: pyinfra timed out after {self.timeout:.0f}s"
                if isinstance(exc, subprocess.TimeoutExpired)
                else "jobtory: the pyinfra process ended before it was asked to deploy"
            )
            return RunResult(False, 0, time.monotonic() - started, (reason,), self.log)
        return _checked(self.result, self.host, False, self.log, code, time.monotonic() - started)

    def close(self) -> None:
        """End the process without executing (stdin closed without "go"); idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
