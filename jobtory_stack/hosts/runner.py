"""Running pyinfra for one host: a plan (dry run) or the deploy, its log kept in a file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jobtory_stack.hosts.settings import LOG_DIR, REPO

PYINFRA_DIR = REPO / "pyinfra"
DEPLOY_FILE = PYINFRA_DIR / "deploy.py"

TOTAL_RE = re.compile(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")


DRY_ROW_RE = re.compile(r"(\d+ \([^)]*\)|-)\s+(\d+ \([^)]*\)|-)\s*$")


ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class RunResult:
    ok: bool
    changed: int
    seconds: float
    reasons: tuple[str, ...]
    log: Path


def _num(text: str) -> int:
    return int(text) if text.isdigit() else 0


def pyinfra_executable() -> str:
    local = Path(sys.executable).parent / "pyinfra"
    return str(local) if local.exists() else (shutil.which("pyinfra") or "pyinfra")


def parse_changes(output: str, dry: bool, host: str) -> int:
    """Changed operations from pyinfra's summary (results table, or the dry-run plan)."""
    text = ANSI_RE.sub("", output)
    if not dry:
        match = TOTAL_RE.search(text)
        return _num(match.group(2)) if match else 0
    # Dry run (no -y): the "Detected changes" table: Operation | Change | Conditional Change,
    # a cell being "N (host, ...)" or "-". Count the operations naming this host.
    section = text.split("Detected changes:", 1)[-1].split("Detected changes may not", 1)[0]
    count = 0
    for line in section.splitlines():
        cells = DRY_ROW_RE.search(line)
        if not cells:
            continue
        for cell in cells.groups():
            hosts = cell.partition("(")[2].rstrip(")").split(",")
            if host in [h.strip() for h in hosts]:
                count += 1
                break
    return count


def run_pyinfra(
    inventory: Path,
    host: str,
    data: Mapping[str, str],
    dry: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> RunResult:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = LOG_DIR / f"hosts-{stamp}-{host}{'-plan' if dry else ''}.log"
    cmd = [pyinfra_executable(), str(inventory), str(DEPLOY_FILE), "--limit", host]
    cmd.append("--dry" if dry else "-y")  # dry without -y: pyinfra prints its change table
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            check=False,
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = str(exc.stdout or "") + str(exc.stderr or "")
        code = -1
        output += f"\njobtory: pyinfra timed out after {timeout:.0f}s\n"
    seconds = time.monotonic() - started
    log.write_text(output)
    reasons = tuple(
        dict.fromkeys(
            m.group(0).strip()
            for m in re.finditer(r"jobtory: [^\n]*(failed|not built|timed out)[^\n]*", output)
        )
    )
    if code != 0 and not reasons:
        errors = [
            ANSI_RE.sub("", line).strip()
            for line in output.splitlines()
            if "rror" in line or "failed" in line.lower()
        ]
        reasons = tuple(errors[-3:]) or (f"pyinfra exited {code}",)
    return RunResult(code == 0, parse_changes(output, dry, host), seconds, reasons, log)
