"""Bad specs and bad commands are refused before any side effect: no API call at all
(reads included), and one line naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobtory_stack.cli import main
from tests.helpers import ROOT

pytestmark = pytest.mark.aws

SPEC = ROOT / "stack.toml"


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command; it must exit 1 with exactly one `error:` line, which is returned."""
    assert main(list(argv)) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, errors
    return errors[0]


def test_a_spec_that_weakens_production_makes_no_call(
    aws_env: str, capsys: pytest.CaptureFixture[str], api_calls: list[str], tmp_path: Path
) -> None:
    spec = tmp_path / "stack.toml"
    spec.write_text(
        SPEC.read_text().replace(
            'GOOGLE_OIDC_ISSUER = "https://accounts.google.com"\n',
            'GOOGLE_OIDC_ISSUER = "https://accounts.google.com"\nLD_PRELOAD = "/tmp/evil.so"\n',
            1,
        )
    )
    for command in (["plan"], ["apply"], ["destroy", "--yes"], ["params", "sync"]):
        error = refused(capsys, *command, "--spec", str(spec), "--env", "staging")
        assert error.startswith("error: ssm.values.LD_PRELOAD: the dynamic loader reads it")
        assert error.endswith("remove it (ssm.values set the app's settings)")
    assert api_calls == []
