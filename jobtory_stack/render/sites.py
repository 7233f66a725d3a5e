"""The one mapping from the spec to a Caddy site (`CaddySite`), for the replica's `web`
service and for a host (gunicorn on its loopback, the admin API on a unix socket)."""

from __future__ import annotations

from dataclasses import replace

from jobtory_stack.render.caddyfile import CaddySite, Mode
from jobtory_stack.spec.constants import HOST_BIND, HOST_CADDY_ADMIN, HOST_STATIC_ROOT
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.model import Environment


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


def host_site(
    env: Environment,
    mode: Mode | None = None,
    bind: str = HOST_BIND,
    static_root: str = HOST_STATIC_ROOT,
) -> CaddySite:
    """A host's Caddy: the spec's one CaddySite mapping (`mode` overrides caddy.mode),
    gunicorn on the host's loopback, static files from the current release, the admin
    API on the host's unix socket. `deploy.py migrate` switches hosts to this alb site."""
    site = caddy_site(env, mode=mode, upstreams=(bind,), static_root=static_root)
    return replace(site, admin=HOST_CADDY_ADMIN)
