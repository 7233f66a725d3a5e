"""Spec -> configuration files for the replica and the hosts (postgresql.conf, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from jobtory_stack.rds_parameters import RDS_ONLY
from jobtory_stack.spec import Environment


def postgres_conf(env: Environment) -> str:
    """postgresql.conf lines from the RDS parameter group, so the replica matches RDS."""
    lines = [f"# Generated from the spec ({env.name}: rds.parameters); do not edit."]
    for name, value in sorted(env.rds.parameters.items()):
        if name in RDS_ONLY:
            lines.append(f"# {name} = {conf_value(value)}  (RDS only)")
            continue
        lines.append(f"{name} = {conf_value(value)}")
    return "\n".join(lines) + "\n"


def conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


ARTIFACTS: dict[str, Callable[[Environment], str]] = {
    "postgres-conf": postgres_conf,
}


def cmd_render(args: argparse.Namespace) -> int:
    from jobtory_stack.cli import resolve_env

    text = ARTIFACTS[args.artifact](resolve_env(args))
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 0


def register_cli(sub: Any) -> None:
    from pathlib import Path

    from jobtory_stack.cli import env_options

    p = sub.add_parser(
        "render", parents=[env_options()], help="write a config file derived from the spec"
    )
    p.add_argument("artifact", choices=sorted(ARTIFACTS))
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_render)
