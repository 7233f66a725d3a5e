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
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = log_dir / f"hosts-{stamp}-{host}{'-plan' if dry else ''}.log"
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)  # a result left by an earlier run must never be read
    cmd = [sys.executable, "-m", CHILD, str(inventory), str(deploy_file), host]
    cmd += ["--result", str(result), *(["--dry"] if dry else [])]
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
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
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                check=False,
            )
        except subprocess.TimeoutExpired:
            reason = f"jobtory: pyinfra timed out after {timeout:.0f}s"
            out.write(f"\n{reason}\n")
            return RunResult(False, 0, time.monotonic() - started, (reason,), log)
    seconds = time.monotonic() - started
    ok, changed, reasons = read_result(result, host, dry, log)
    if ok != (proc.returncode == 0):
        raise HostsError(
            f"pyinfra exited {proc.returncode} but its result says "
            f"{'ok' if ok else 'failed'}; see {log}"
        )
    return RunResult(ok, len(changed), seconds, tuple(reasons), log, tuple(changed))
