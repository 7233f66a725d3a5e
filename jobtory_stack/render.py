"""Spec -> configuration files for the replica and the hosts (postgresql.conf, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from jobtory_stack.alb_standin import AlbStandin, TargetGroup
from jobtory_stack.alb_standin import render_env_file as render_alb_env
from jobtory_stack.caddyfile import CaddySite, Mode, render_caddyfile
from jobtory_stack.derived import derive
from jobtory_stack.rds_parameters import RDS_ONLY
from jobtory_stack.spec import Environment

# The replica's ALB stand-in forwards to the compose service `web` (Caddy).
REPLICA_TARGETS = ("web:80",)


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


def caddy_site(
    env: Environment,
    mode: Mode | None = None,
    upstreams: tuple[str, ...] | None = None,
    static_root: str | None = None,
) -> CaddySite:
    """The spec's Caddy settings; `mode` overrides caddy.mode (e.g. during a migration)."""
    d = derive(env)
    mode = mode or env.caddy.mode
    return CaddySite(
        mode=mode,
        hosts=(d.duckdns_host,) if mode == "direct" else d.domain_hosts,
        upstreams=upstreams or (env.caddy.upstream,),
        trusted_proxies=d.trusted_proxies,
        static_root=static_root or env.caddy.static_root,
        tls_internal=env.caddy.tls_internal,
    )


def alb_standin(env: Environment, targets: tuple[str, ...] = REPLICA_TARGETS) -> AlbStandin:
    """The ALB stand-in modelled on the spec's listener and target group."""
    d, hc = derive(env), env.alb.health_check
    group = TargetGroup(
        name=d.resource_name("tg"),
        health_check_path=hc.path,
        interval_seconds=hc.interval_seconds,
        timeout_seconds=hc.timeout_seconds,
        healthy_threshold=hc.healthy_threshold,
        unhealthy_threshold=hc.unhealthy_threshold,
        matcher=hc.matcher,
        deregistration_delay_seconds=env.alb.deregistration_delay_seconds,
    )
    return AlbStandin(
        hostnames=d.domain_hosts,
        targets=targets,
        target_group=group,
        public_https_port=env.domain.public_port,
    )


ARTIFACTS: dict[str, Callable[[Environment, argparse.Namespace], str]] = {
    "postgres-conf": lambda env, args: postgres_conf(env),
    "caddyfile": lambda env, args: render_caddyfile(caddy_site(env, mode=args.mode)),
    "alb-env": lambda env, args: render_alb_env(alb_standin(env, tuple(args.targets))),
}


def cmd_render(args: argparse.Namespace) -> int:
    from jobtory_stack.cli import resolve_env

    text = ARTIFACTS[args.artifact](resolve_env(args), args)
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
