"""The layer contract (pyproject.toml [tool.importlinter]) holds for the package, and it
can fail: an upward import or a cycle, function-level imports included, in a scratch copy
of the package breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the package and its contract."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "jobtory_stack",
        tmp_path / "jobtory_stack",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def add_function_import(module: Path, statement: str) -> None:
    """An import hidden inside a function: the kind that once hid a 13-module circle."""
    module.write_text(module.read_text() + f"\n\ndef _scratch() -> None:\n    {statement}\n")


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(scratch: Path) -> None:
    add_function_import(
        scratch / "jobtory_stack" / "spec" / "model.py", "from jobtory_stack.cli import main"
    )
    result = lint_imports(scratch)
    assert result.returncode == 1
    assert "the package's layers" in result.stdout and "BROKEN" in result.stdout
    assert "jobtory_stack.spec.model -> jobtory_stack.cli" in result.stdout


def test_a_cycle_breaks_the_contract(scratch: Path) -> None:
    add_function_import(
        scratch / "jobtory_stack" / "hosts" / "settings.py",
        "from jobtory_stack.hosts import rolling",
    )
    result = lint_imports(scratch)
    assert result.returncode == 1
    assert "no import cycle" in result.stdout and "BROKEN" in result.stdout
