"""What every command shares: exit codes, --spec/--env, loading the environment, output,
and the one confirmation rule of every command that destroys, adopts or applies.

Each command module (spec, aws, hosts, caddy, migrate) adds its parsers with
`register(subparsers)`; a handler maps argparse's Namespace onto typed options, calls
one domain function and prints the result. Domain modules that need boto3 or pyinfra are
imported inside handlers, so `validate`, `show` and `oauth` start without them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jobtory_stack.errors import JobtoryError
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_SPEC = Path(os.environ.get("JOBTORY_SPEC", "stack.toml"))
Handler = Callable[[argparse.Namespace], int]


def env_options(default_env: str | None = "local") -> argparse.ArgumentParser:
    """Parent parser: --spec and --env, shared by every command that reads the spec."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC, help="the stack spec (default: %(default)s)"
    )
    parent.add_argument(
        "--env", default=default_env, help="environment name (default: %(default)s)"
    )
    return parent


def endpoint_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="AWS API endpoint (an emulator); default: AWS_ENDPOINT_URL, then the spec's",
    )
    return parent


def resolve_env(args: argparse.Namespace) -> Environment:
    """Load and validate the environment named by --env; warnings go to stderr."""
    env = load_stack(args.spec).env(args.env)
    for warning in env.warnings:
        print(warning, file=sys.stderr)
    return env


def out(line: str = "") -> None:
    print(line, flush=True)


# ---- the confirmation rule -----------------------------------------------------------------
#
# Every command that destroys, adopts or applies shows its plan and asks. `--yes` answers
# for scripts; with no terminal to ask on and no --yes, the command refuses before it
# reads anything from AWS. A protected environment also needs its name: typed at the
# prompt, or `--confirm-env NAME`. Commands add `confirm_options()` to their parser, call
# `Confirmation.check()` before their first API call and `confirm()` after showing the plan.


class NotConfirmed(JobtoryError):
    """The command was not confirmed: nothing was changed."""


@dataclass(frozen=True)
class Consent:
    """What the command line already answered."""

    yes: bool = False
    confirm_env: str | None = None


def confirm_options() -> argparse.ArgumentParser:
    """Parent parser: --yes and --confirm-env NAME."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--yes",
        action="store_true",
        help="answer the confirmation (scripts); without a terminal and without it, "
        "the command refuses",
    )
    parent.add_argument(
        "--confirm-env",
        metavar="NAME",
        help="a protected environment's name, as typed at the prompt (scripts: with --yes)",
    )
    return parent


def consent_from(args: argparse.Namespace) -> Consent:
    return Consent(bool(getattr(args, "yes", False)), getattr(args, "confirm_env", None))


@dataclass(frozen=True)
class Confirmation:
    """The rule for one command (`action`, e.g. "destroy") on one environment."""

    action: str
    env: Environment
    consent: Consent
    stdin: TextIO | None = None  # default: sys.stdin at the time of the call
    prompts: TextIO | None = None  # where questions go (stderr: stdout holds the plan)

    @property
    def _stdin(self) -> TextIO:
        return self.stdin or sys.stdin

    @property
    def needs_name(self) -> bool:
        return self.env.protected and self.consent.confirm_env is None

    def check(self) -> None:
        """Before any API call: refuse what could never be confirmed."""
        name, given = self.env.name, self.consent.confirm_env
        if given is not None and given != name:
            raise NotConfirmed(
                f"--confirm-env {given} does not match the environment {name!r}; "
                f"pass --confirm-env {name} if {name} is the one you mean"
            )
        if (self.needs_name or not self.consent.yes) and not self._stdin.isatty():
            missing = " ".join(
                flag
                for flag, needed in (
                    ("--yes", not self.consent.yes),
                    (f"--confirm-env {name}", self.needs_name),
                )
                if needed
            )
            protected = " (a protected environment)" if self.env.protected else ""
            raise NotConfirmed(
                f"{self.action} needs a confirmation and there is no terminal to ask on: "
                f"pass {missing} to {self.action} {name}{protected}"
            )

    def confirm(self, what: str) -> None:
        """After the plan is shown: ask what the command line did not answer."""
        self.check()
        name = self.env.name
        if self.needs_name:
            question = f"{name} is protected: type its name to {self.action} {what}: "
            expected = name
        elif not self.consent.yes:
            question = f"{self.action} {what} in {name}? Only 'yes' is accepted: "
            expected = "yes"
        else:
            return
        prompts = self.prompts or sys.stderr
        prompts.write(question)
        prompts.flush()
        if self._stdin.readline().strip() != expected:
            raise NotConfirmed(
                f"{self.action} cancelled: the answer was not {expected!r}; nothing changed"
            )
