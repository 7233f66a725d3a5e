"""`deploy.py`: the command line of the jobtory stack.

Exit codes: 0 ok, 1 error (bad spec, failed step), 2 usage (bad arguments).
Errors are one line on stderr, never a traceback; output reads the same with or
without a TTY (no colour codes unless stdout is a terminal).

Commands live next to what they drive: each module with commands exposes
`register_cli(subparsers)` and handlers returning an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jobtory_stack.derived import derive
from jobtory_stack.spec import Environment, SpecError, load_stack

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_SPEC = Path(os.environ.get("JOBTORY_SPEC", "stack.toml"))
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A command failed in a way the user can fix; main() prints it as one line."""


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


def resolve_env(args: argparse.Namespace) -> Environment:
    """Load and validate the environment named by --env; warnings go to stderr."""
    env = load_stack(args.spec).env(args.env)
    for warning in env.warnings:
        print(warning, file=sys.stderr)
    return env


def out(line: str = "") -> None:
    print(line, flush=True)


# ---- spec commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    stack = load_stack(args.spec)
    names = [args.env] if args.env else stack.env_names
    problems: list[str] = []
    for name in names:
        try:
            env = stack.env(name)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        for warning in env.warnings:
            print(warning, file=sys.stderr)
        out(f"{name}: ok")
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))  # a shared-section problem once
    return EXIT_OK


def resolved_config(env: Environment) -> dict[str, Any]:
    """The resolved configuration with derived values; secrets by SSM name only."""
    d = derive(env)
    return {
        "environment": env.name,
        "spec": env.doc.model_dump(mode="json"),
        "derived": {
            "served_hosts": list(d.served_hosts),
            "domain_hosts": list(d.domain_hosts),
            "frontend_base_url": d.frontend_base_url,
            "vite_api_base": d.vite_api_base,
            "google_redirect_uri": d.google_redirect_uri,
            "csrf_trusted_origins": list(d.origins),
            "allowed_hosts": list(d.served_hosts),
            "certificate_names": list(d.certificate_names),
            "certificate_region": env.certificate_region,
            "rds_parameter_group_family": env.rds.family,
            "trusted_proxies": list(d.trusted_proxies),
            "ssm_prefix": env.ssm_prefix,
            "ssm_parameters": {d.parameter_name(k): v for k, v in d.parameters.items()},
            "ssm_secrets": [d.parameter_name(k) + " (SecureString)" for k in d.secret_names],
            "tags": d.tags,
            "names": {kind: d.resource_name(kind) for kind in ("vpc", "alb", "tg", "asg", "db")},
        },
    }


def cmd_show(args: argparse.Namespace) -> int:
    config = resolved_config(resolve_env(args))
    if args.json:
        out(json.dumps(config, indent=2))
        return EXIT_OK
    print_tree(config)
    return EXIT_OK


def print_tree(node: Any, indent: str = "") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                out(f"{indent}{key}:")
                print_tree(value, indent + "  ")
            else:
                out(f"{indent}{key}: {format_scalar(value)}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                out(f"{indent}-")
                print_tree(item, indent + "  ")
            else:
                out(f"{indent}- {format_scalar(item)}")


def format_scalar(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == [] or value == {}:
        return "(none)"
    return str(value)


def cmd_oauth(args: argparse.Namespace) -> int:
    env = resolve_env(args)
    d = derive(env)
    out(f"Google Cloud console > APIs & Services > Credentials > OAuth client ({env.name})")
    out("Authorized JavaScript origins:")
    for origin in d.oauth_js_origins:
        out(f"  {origin}")
    out("Authorized redirect URIs:")
    for uri in d.oauth_redirect_uris:
        out(f"  {uri}")
    return EXIT_OK


# ---- wiring ----------------------------------------------------------------------------------


SPEC_COMMANDS = ("validate", "show", "oauth")  # defined here; need neither boto3 nor pyinfra


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; for one of SPEC_COMMANDS (the first word of `argv`) only those,
    so `deploy.py validate` does not import the AWS SDK the other commands need."""
    parser = argparse.ArgumentParser(
        prog="deploy.py",
        description="The jobtory stack: validate the spec, run the replica, deploy to AWS.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        parents=[env_options(default_env=None)],
        help="check the spec (every environment unless --env)",
    )
    p.set_defaults(handler=cmd_validate)
    p = sub.add_parser("show", parents=[env_options()], help="print the resolved configuration")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser(
        "oauth", parents=[env_options()], help="what to register in the Google OAuth console"
    )
    p.set_defaults(handler=cmd_oauth)

    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if not words or words[0] not in SPEC_COMMANDS:
        for register in _command_modules():
            register(sub)
    return parser


def _command_modules() -> list[Callable[[Any], object]]:
    """register_cli of every module that adds commands."""
    from jobtory_stack import caddy_admin, hosts, migrate, render
    from jobtory_stack.aws import cli as aws_cli

    return [
        render.register_cli,
        aws_cli.register_cli,
        hosts.register_cli,
        caddy_admin.register_cli,
        _register_alb,
        migrate.register_cli,
    ]


def _register_alb(sub: Any) -> None:
    from jobtory_stack import alb_standin

    alb = sub.add_parser("alb", help="the replica's ALB stand-in: TLS, targets, draining")
    alb_standin.register_cli(alb.add_subparsers(dest="alb_command", required=True))


def user_errors() -> tuple[type[Exception], ...]:
    """Failures the user can act on: printed as one line, exit 1, never a traceback."""
    from jobtory_stack.alb_standin import AlbError
    from jobtory_stack.caddy_admin import CaddyError
    from jobtory_stack.caddyfile import CaddySiteError
    from jobtory_stack.hosts import HostsError

    return (CommandError, AlbError, CaddyError, CaddySiteError, HostsError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)  # exits 2 on usage errors
    handler: Handler = args.handler
    try:
        return handler(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `deploy.py show | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
