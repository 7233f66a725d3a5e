"""What every command shares: exit codes, --spec/--env, loading the environment, output.

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
from pathlib import Path

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
