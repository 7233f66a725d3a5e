"""Renderers: the spec's values reach postgresql.conf, the Caddyfile and the ALB stand-in."""

from __future__ import annotations

from jobtory_stack.render.alb_env import alb_env
from jobtory_stack.render.caddyfile import render_caddyfile
from jobtory_stack.render.postgres import postgres_conf
from jobtory_stack.render.sites import caddy_site
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT

STACK = load_stack(ROOT / "stack.toml")


def test_postgres_conf_carries_every_parameter() -> None:
    env = STACK.env("local")
    lines = postgres_conf(env).splitlines()
    for name, value in env.rds.parameters.items():
        rendered = f"'{value}'" if isinstance(value, str) else str(value)
        assert f"{name} = {rendered}" in lines


def test_caddy_alb_mode_trusts_only_the_spec_proxies() -> None:
    env = STACK.env("prod")
    site = caddy_site(env)
    assert site.mode == "alb"
    assert site.hosts == ("jobtory.com", "www.jobtory.com")
    assert site.trusted_proxies == ("10.20.0.0/16",)
    text = render_caddyfile(site)
    assert "trusted_proxies static 10.20.0.0/16" in text
    assert "trusted_proxies_strict" in text


def test_caddy_direct_mode_serves_the_duckdns_name() -> None:
    site = caddy_site(STACK.env("prod"), mode="direct")
    assert site.hosts == ("jobtory.duckdns.org",)
    assert "jobtory.duckdns.org {" in render_caddyfile(site)


def test_alb_standin_models_the_target_group() -> None:
    env = STACK.env("local")
    values = alb_env(env)
    hc = env.alb.health_check
    assert values["ALB_PUBLIC_HTTPS_PORT"] == "8443"
    assert values["HC_PATH"] == hc.path
    assert values["HC_INTERVAL"] == str(hc.interval_seconds)
    assert values["HC_HEALTHY"] == str(hc.healthy_threshold)
    assert values["HC_UNHEALTHY"] == str(hc.unhealthy_threshold)
    assert values["HC_MATCHER"] == hc.matcher
    assert values["DEREGISTRATION_DELAY"] == str(env.alb.deregistration_delay_seconds)
    assert values["ALB_TARGETS"] == "web:80"
