"""Bad specs and bad commands are refused before any side effect: no API call at all
(reads included), and one line naming the field and the fix."""

from __future__ import annotations

import io
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


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "DJANGO_SECRET_KEY",
            "too-short-for-django",
            "error: DJANGO_SECRET_KEY: needs 50+ characters, 5+ different ones and no "
            "'django-insecure-' prefix (Django's check --deploy); pipe in a new one: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
        ),
        (
            "DB_PASSWORD",
            "no spaces@here",
            'error: DB_PASSWORD: RDS takes 8-128 printable ASCII characters except / " @ and '
            "space; pipe in a new one: python3 -c",
        ),
        ("NOT_A_SECRET", "x", "error: NOT_A_SECRET is not a parameter of the spec; list it"),
    ],
)
def test_a_secret_of_the_wrong_shape_makes_no_call(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    api_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))
    error = refused(capsys, "params", "set", "--spec", str(SPEC), "--env", "prod", name)
    assert error.startswith(expected)
    assert value not in error
    assert api_calls == []


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        (
            "staging",
            (),
            "error: destroy needs a confirmation and there is no terminal to ask on: pass "
            "--yes to destroy staging",
        ),
        (
            "prod",
            ("--yes",),
            "error: destroy needs a confirmation and there is no terminal to ask on: pass "
            "--confirm-env prod to destroy prod (a protected environment)",
        ),
        (
            "prod",
            ("--yes", "--confirm-env", "staging"),
            "error: --confirm-env staging does not match the environment 'prod'; pass "
            "--confirm-env prod if prod is the one you mean",
        ),
    ],
)
def test_an_unconfirmed_destroy_makes_no_call(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    api_calls: list[str],
    env: str,
    flags: tuple[str, ...],
    expected: str,
) -> None:
    error = refused(capsys, "destroy", "--spec", str(SPEC), "--env", env, *flags)
    assert error == expected
    assert api_calls == []
