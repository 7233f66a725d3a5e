"""`deploy.py`: the command line of the jobtory stack.

Exit codes: 0 ok, 1 error (bad spec, failed step), 2 usage (bad arguments).
Errors are one line on stderr, never a traceback; output reads the same with or
without a TTY (no colour codes unless stdout is a terminal). This is the only place
that turns a JobtoryError (or a botocore failure) into an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jobtory_stack.cli import aws, caddy, hosts, migrate, release, spec
from jobtory_stack.cli.common import EXIT_ERROR, EXIT_OK, Handler
from jobtory_stack.errors import JobtoryError


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Every command's parser (`argv` is accepted for callers that pass it; unused)."""
    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description="The jobtory stack: validate the spec, run the replica, deploy to AWS.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    spec.register(sub)
    spec.register_render(sub)
    aws.register(sub)
    hosts.register(sub)
    release.register(sub)
    caddy.register(sub)
    migrate.register(sub)
    return parser


def as_user_error(exc: BaseException) -> JobtoryError | None:
    """A JobtoryError as it is; a botocore failure as its one-line AwsError."""
    if isinstance(exc, JobtoryError):
        return exc
    if "botocore" in sys.modules:  # loaded only by the commands that talk to AWS
        from jobtory_stack.aws.client import explain

        return explain(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # exits 2 on usage errors
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # e.g. `deploy.py show | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        error = as_user_error(exc)
        if error is None:
            raise
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_ERROR
