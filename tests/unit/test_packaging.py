"""What ships: the wheel and a host release hold the product only. Replica-only tooling
(the ALB stand-in, the fleet's helpers) lives in replica/, which neither of them holds."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.release import default_version, source_files
from tests.helpers import ROOT, git_checkout, private_key_pem

# What only the replica's tooling defines: the ALB stand-in and the fleet's helpers.
REPLICA_ONLY = {
    "AlbStandin",
    "render_haproxy_cfg",
    "generate_tls",
    "ensure_fleet_key",
    "fleet_inventory",
    "fleet_balancer",
    "FleetBalancer",
}


def replica_tooling(name: str, source: str) -> list[str]:
    """Why a shipped file is replica tooling: its path, what it defines, what it imports."""
    found = [name] if name.startswith("replica/") or "alb_standin" in name else []
    if not name.endswith(".py"):
        return found
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in REPLICA_ONLY:
            found.append(f"defines {node.name}")
        elif isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] == "replica"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "replica":
            found.append(f"imports {node.module}")
    return found


def build_wheel(out: Path) -> Path:
    uv = shutil.which("uv")
    cmd = [uv, "build", "--wheel", "--out-dir", str(out), "--quiet"] if uv else None
    if cmd is None:
        cmd = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", str(out), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_holds_no_replica_tooling(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        assert "jobtory_stack/hosts/standin.py" in names  # the product's own adapter ships
        found = {
            name: hits
            for name in names
            if (hits := replica_tooling(name, whl.read(name).decode(errors="replace")))
        }
    assert found == {}


def test_a_host_release_holds_no_replica_tooling() -> None:
    files = dict(source_files(ROOT))
    assert "jobtory_stack/hosts/runner.py" in files and "pyinfra/deploy.py" in files
    found = {
        name: hits
        for name, path in files.items()
        if (hits := replica_tooling(name, path.read_text(errors="replace")))
    }
    assert found == {}


def test_a_release_ships_only_what_git_tracks(tmp_path: Path) -> None:
    """A local `app/.env`, a key or a scratch file in the checkout never reach a host,
    nor change the release's content-addressed version."""
    files = ("app/manage.py", "jobtory_stack/__init__.py", "stack.toml", "deploy.py")
    repo = git_checkout(tmp_path / "checkout", files, "*.key\n")
    version = default_version(repo)
    (repo / "app" / ".env").write_text("DJANGO_SECRET_KEY=local-only\n")  # untracked
    (repo / "app" / "deploy.key").write_text(private_key_pem())  # ignored
    (repo / "jobtory_stack" / "scratch.py").write_text("print('mine')\n")  # untracked
    shipped = sorted(name for name, _ in source_files(repo))
    assert shipped == ["app/manage.py", "deploy.py", "jobtory_stack/__init__.py", "stack.toml"]
    assert default_version(repo) == version
    with pytest.raises(HostsError, match="not a git checkout"):
        list(source_files(tmp_path))
