"""The spec's commands: validate, show, oauth and render. They need neither boto3 nor
pyinfra."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobtory_stack.cli.common import EXIT_OK, env_options, out, resolve_env
from jobtory_stack.errors import SpecError
from jobtory_stack.render.alb_env import REPLICA_TARGETS, render_alb_env
from jobtory_stack.render.caddyfile import render_caddyfile
from jobtory_stack.render.postgres import postgres_conf
from jobtory_stack.render.sites import caddy_site
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment


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
            "release_bucket": d.release_bucket("<account-id>"),
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


ARTIFACTS: dict[str, Callable[[Environment, argparse.Namespace], str]] = {
    "postgres-conf": lambda env, args: postgres_conf(env),
    "caddyfile": lambda env, args: render_caddyfile(caddy_site(env, mode=args.mode)),
    "alb-env": lambda env, args: render_alb_env(env, tuple(args.targets)),
}


def cmd_render(args: argparse.Namespace) -> int:
    text = ARTIFACTS[args.artifact](resolve_env(args), args)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return EXIT_OK


def register(sub: Any) -> None:
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


def register_render(sub: Any) -> None:
    p = sub.add_parser(
        "render", parents=[env_options()], help="write a config file derived from the spec"
    )
    p.add_argument("artifact", choices=sorted(ARTIFACTS))
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.add_argument(
        "--mode", choices=["alb", "direct"], help="caddyfile: override caddy.mode from the spec"
    )
    p.add_argument(
        "--targets",
        nargs="+",
        default=list(REPLICA_TARGETS),
        help="alb-env: the target group's host:port targets (default: %(default)s)",
    )
    p.set_defaults(handler=cmd_render)
