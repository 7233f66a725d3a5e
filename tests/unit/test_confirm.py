"""The one confirmation rule (cli.common.Confirmation) of every command that destroys,
adopts or applies: it shows its plan and asks; --yes answers for scripts; with no
terminal and no --yes it refuses; a protected environment also needs its name, typed or
--confirm-env NAME."""

from __future__ import annotations

import io

import pytest

from jobtory_stack.cli.common import Confirmation, Consent, NotConfirmed
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT

STACK = load_stack(ROOT / "stack.toml")


class Terminal(io.StringIO):
    """stdin as a terminal, holding what the user types."""

    def isatty(self) -> bool:
        return True


def rule(env: str, consent: Consent, typed: str | None = None) -> tuple[Confirmation, io.StringIO]:
    """The rule for `destroy`: stdin a terminal holding `typed`, or no terminal (None)."""
    stdin = io.StringIO("") if typed is None else Terminal(typed)
    prompts = io.StringIO()
    return Confirmation("destroy", STACK.env(env), consent, stdin, prompts), prompts


def test_the_shipped_environments_say_whether_they_are_protected() -> None:
    assert STACK.env("prod").protected
    assert not STACK.env("staging").protected
    assert not STACK.env("local").protected


NO_TERMINAL = "destroy needs a confirmation and there is no terminal to ask on: pass "
PROTECTED = " (a protected environment)"


@pytest.mark.parametrize(
    ("env", "consent", "expected"),
    [
        ("staging", Consent(), NO_TERMINAL + "--yes to destroy staging"),
        ("prod", Consent(), NO_TERMINAL + "--yes --confirm-env prod to destroy prod" + PROTECTED),
        ("prod", Consent(yes=True), NO_TERMINAL + "--confirm-env prod to destroy prod" + PROTECTED),
        ("prod", Consent(confirm_env="prod"), NO_TERMINAL + "--yes to destroy prod" + PROTECTED),
    ],
)
def test_without_a_terminal_what_is_not_answered_is_refused(
    env: str, consent: Consent, expected: str
) -> None:
    confirmation, _ = rule(env, consent)
    with pytest.raises(NotConfirmed) as refused:
        confirmation.check()
    assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("env", "consent"),
    [("staging", Consent(yes=True)), ("prod", Consent(yes=True, confirm_env="prod"))],
)
def test_scripts_answer_with_flags_and_nothing_is_asked(env: str, consent: Consent) -> None:
    confirmation, prompts = rule(env, consent)
    confirmation.check()
    confirmation.confirm("these 3 change(s)")
    assert prompts.getvalue() == ""


def test_a_wrong_environment_name_is_refused_even_with_yes() -> None:
    for env in ("prod", "staging"):
        confirmation, _ = rule(env, Consent(yes=True, confirm_env="production"), typed="")
        with pytest.raises(NotConfirmed, match=f"does not match the environment '{env}'"):
            confirmation.check()


def test_on_a_terminal_an_unprotected_environment_asks_for_yes() -> None:
    confirmation, prompts = rule("staging", Consent(), typed="yes\n")
    confirmation.confirm("these 3 change(s)")
    assert prompts.getvalue() == "destroy these 3 change(s) in staging? Only 'yes' is accepted: "
    for answer in ("y\n", "no\n", ""):
        confirmation, _ = rule("staging", Consent(), typed=answer)
        with pytest.raises(NotConfirmed, match="destroy cancelled: the answer was not 'yes'"):
            confirmation.confirm("these 3 change(s)")


def test_on_a_terminal_a_protected_environment_needs_its_name_typed() -> None:
    confirmation, prompts = rule("prod", Consent(), typed="prod\n")
    confirmation.confirm("these 3 change(s)")
    assert prompts.getvalue() == "prod is protected: type its name to destroy these 3 change(s): "
    # --yes answers the question, not the name
    for consent in (Consent(), Consent(yes=True)):
        confirmation, _ = rule("prod", consent, typed="yes\n")
        with pytest.raises(NotConfirmed, match="the answer was not 'prod'"):
            confirmation.confirm("these 3 change(s)")


def test_the_name_given_as_a_flag_still_asks_yes_on_a_terminal() -> None:
    confirmation, prompts = rule("prod", Consent(confirm_env="prod"), typed="yes\n")
    confirmation.confirm("these 3 change(s)")
    assert "Only 'yes' is accepted" in prompts.getvalue()


def test_migrate_takes_over_only_when_asked() -> None:
    """migrate writes SSM with `params sync`, which refuses a take-over in a protected env
    (aws.core.refuse_takeovers): `--adopt-existing` reaches its context."""
    from jobtory_stack.cli.main import build_parser
    from jobtory_stack.cli.migrate import migration_from_args

    for flags, adopt in (([], False), (["--adopt-existing"], True)):
        args = build_parser().parse_args(["migrate", "--env", "prod", *flags])
        assert migration_from_args(args).ctx.adopt_existing is adopt
