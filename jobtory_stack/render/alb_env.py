"""The replica's ALB stand-in settings from the spec: the listener's hostnames, the
target group (health check, matcher, deregistration delay) and its targets, as the
ALB_* / HC_* variables the stand-in's entrypoint reads (replica/alb_standin.py)."""

from __future__ import annotations

import shlex

from jobtory_stack.spec.constants import HTTP_PORT
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.model import Environment

# The replica's ALB stand-in forwards to the compose service `web` (Caddy).
REPLICA_TARGETS = ("web:80",)
HSTS_MAX_AGE = 31536000  # one year, as the ALB stand-in sends it


def with_port(target: str, port: int = HTTP_PORT) -> str:
    """'web' -> 'web:80'; 'web:8080' stays."""
    return target if ":" in target else f"{target}:{port}"


def alb_env(env: Environment, targets: tuple[str, ...] = REPLICA_TARGETS) -> dict[str, str]:
    """The stand-in's variables; container concerns (listener ports, TLS, user) are the
    image's."""
    d, hc = derive(env), env.alb.health_check
    return {
        "ALB_HOSTNAMES": ",".join(d.domain_hosts),
        "ALB_TARGETS": ",".join(with_port(t) for t in targets),
        "ALB_TARGET_GROUP": d.resource_name("tg"),
        "ALB_TARGET_PORT": str(HTTP_PORT),
        "ALB_PUBLIC_HTTPS_PORT": str(env.domain.public_port),
        "ALB_HSTS_MAX_AGE": str(HSTS_MAX_AGE),
        "HC_PATH": hc.path,
        "HC_INTERVAL": str(hc.interval_seconds),
        "HC_TIMEOUT": str(hc.timeout_seconds),
        "HC_HEALTHY": str(hc.healthy_threshold),
        "HC_UNHEALTHY": str(hc.unhealthy_threshold),
        "HC_MATCHER": hc.matcher,
        "DEREGISTRATION_DELAY": str(env.alb.deregistration_delay_seconds),
    }


def render_alb_env(env: Environment, targets: tuple[str, ...] = REPLICA_TARGETS) -> str:
    """`alb_env` as an env file (/generated/alb.env): sh-quoted, sourced by the entrypoint."""
    lines = ["# ALB stand-in settings, rendered from the spec. Do not edit."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in alb_env(env, targets).items()]
    return "\n".join(lines) + "\n"
