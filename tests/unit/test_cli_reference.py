"""What users see of the CLI does not change under a restructuring: every command's
--help and the exit codes of good and bad invocations, against the committed reference
(tests/unit/cli_reference/reference.json). Only `alb` may differ: it left the product."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.cli_reference.generate import (
    INVOCATIONS,
    REFERENCE,
    exit_codes,
    help_texts,
    spec_files,
)

REF = json.loads(REFERENCE.read_text())


def test_every_command_keeps_its_help() -> None:
    now = help_texts()
    assert sorted(now) == sorted(REF["help"]), "commands were added or removed"
    for command, text in REF["help"].items():
        assert now[command] == text, f"`{command} --help` changed"


def test_exit_codes_are_unchanged(tmp_path: Path) -> None:
    assert len(REF["exit_codes"]) == len(INVOCATIONS)
    now = exit_codes(spec_files(tmp_path))
    assert now == REF["exit_codes"]


@pytest.mark.parametrize("code", [0, 1, 2])
def test_reference_covers_every_exit_code(code: int) -> None:
    assert code in REF["exit_codes"].values()
