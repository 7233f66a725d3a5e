"""The README's first steps on a stock Debian: a container of the project's own
debootstrap base (debian:trixie-slim, as scripts/up makes it) with nothing but the system
Python. The README's prerequisite command, then what `scripts/up` does before Docker
(packages, uv, `uv sync`: `scripts/bootstrap --no-docker`), then `deploy.py validate`,
each printed with its exit code. The host's uv cache is lent to the container (a cache,
not a shortcut: every package is still resolved and installed from uv.lock); the
machine's CA is trusted as the host's is (a TLS-intercepting proxy may be on the way)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.images import require_image

pytestmark = [pytest.mark.newcomer, pytest.mark.timeout(900)]

BASE_IMAGE = "debian:trixie-slim"


def readme_prerequisite_command() -> str:
    """The one shell line of the README's Prerequisites section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Prerequisites hold one sh block"
    lines = [line.split("  #")[0].strip() for line in blocks[0].splitlines()]
    return " && ".join(line for line in lines if line and not line.startswith("#"))


def project_tar() -> bytes:
    """The working tree as a user's clone holds it: tracked and new files, not ignored."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    existing = b"\0".join(f for f in files.split(b"\0") if f and (ROOT / f.decode()).exists())
    return subprocess.run(
        ["tar", "-c", "--null", "-T", "-"], cwd=ROOT, input=existing, capture_output=True,
        check=True,
    ).stdout  # fmt: skip


SCRIPT = r"""
set -u
run() { echo "+ $*"; bash -c "$*"; rc=$?; echo "exit $rc: $*"; return $rc; }
if [ -s /ca/extra-ca.crt ]; then
    cp /ca/extra-ca.crt /usr/local/share/ca-certificates/ && update-ca-certificates >/dev/null 2>&1
fi
mkdir -p /root/jobtory && tar -x -C /root/jobtory && cd /root/jobtory
if command -v python3 >/dev/null; then echo "python3 before the README: present"
else echo "python3 before the README: absent"; fi
run "apt-get update -qq && $PREREQ" || exit 1
run "python3 --version" || exit 1
run "scripts/bootstrap --no-docker" || exit 1
run "uv run python deploy.py validate" || exit 1
"""


def test_readme_first_steps_on_a_stock_debian(tmp_path: Path) -> None:
    require_image(BASE_IMAGE)
    ca = ROOT / "compose" / "certs"
    cache = Path.home() / ".cache" / "uv"
    cache.mkdir(parents=True, exist_ok=True)
    prereq = readme_prerequisite_command()
    done = subprocess.run(
        ["docker", "run", "--rm", "-i", "--name", f"jobtory-test-stock-{tmp_path.name}"[:60],
         "-e", f"PREREQ={prereq}", "-e", "DEBIAN_FRONTEND=noninteractive",
         "-v", f"{ca}:/ca:ro", "-v", f"{cache}:/root/.cache/uv",
         BASE_IMAGE, "bash", "-c", SCRIPT],
        input=project_tar(), capture_output=True, timeout=850, check=False,
    )  # fmt: skip
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    print(out)  # each command and its exit code, in the test's output
    assert "python3 before the README: absent" in out, "the base is not a bare Debian"
    assert done.returncode == 0, out[-3000:]
    for command in ("scripts/bootstrap --no-docker", "uv run python deploy.py validate"):
        assert f"exit 0: {command}" in out
    assert re.search(r"^local: ok$", out, re.M) and re.search(r"^prod: ok$", out, re.M)
