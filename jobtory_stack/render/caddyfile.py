"""The Caddyfile of both modes, rendered from ONE template (templates/Caddyfile.j2).

- ``alb``: Caddy serves plain HTTP on ``http_port`` behind the ALB (which terminates
  TLS). Forwarded headers are trusted only from ``trusted_proxies`` (the VPC CIDR),
  with ``trusted_proxies_strict`` so the client IP is the right-most untrusted
  X-Forwarded-For entry (the one the ALB appended), not a spoofable left-most one.
- ``direct``: today's production: Caddy terminates HTTPS for the DuckDNS name with
  automatic certificates (``tls internal`` locally); HTTP -> HTTPS is automatic.

The spec -> CaddySite mapping lives with the spec (``site_from_spec``); this module
only knows the site.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from jobtory_stack.errors import CaddySiteError
from jobtory_stack.render.templates import render_template
from jobtory_stack.spec.constants import CADDY_ADMIN_DEFAULT

#: The ``@id`` given to the app's reverse_proxy handler in the loaded JSON config,
#: so upstreams can be managed at ``/id/app_proxy/upstreams``.
APP_PROXY_ID = "app_proxy"

Mode = Literal["alb", "direct"]

_HOST_RE = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_UPSTREAM_RE = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/*-]*$")


@dataclass(frozen=True)
class CaddySite:
    """Everything the Caddyfile needs, for either mode."""

    mode: Mode
    hosts: tuple[str, ...]
    upstreams: tuple[str, ...]  # host:port of gunicorn
    trusted_proxies: tuple[str, ...]  # CIDRs (the VPC range behind the ALB)
    static_root: str
    admin: str = CADDY_ADMIN_DEFAULT  # or "unix//run/caddy/admin.sock"
    http_port: int = 80
    https_port: int = 443
    tls_internal: bool = False
    acme_email: str | None = None
    health_paths: tuple[str, ...] = ("/healthz", "/readyz")
    # Socket activation (systemd .socket units): listen on inherited sockets,
    # e.g. "fd/3" (http) and "fd/4" (https), instead of binding the ports.
    # A reload then keeps the very same kernel socket (and its accept queue).
    http_bind: str | None = None
    https_bind: str | None = None

    def __post_init__(self) -> None:
        for check in (_check_addresses, _check_listeners, _check_paths, _check_mode):
            check(self)


def _check_addresses(site: CaddySite) -> None:
    if site.mode not in ("alb", "direct"):
        raise CaddySiteError(f"mode: {site.mode!r} is not 'alb' or 'direct'")
    if not site.upstreams:
        raise CaddySiteError("upstreams: at least one gunicorn host:port is required")
    for up in site.upstreams:
        if not _UPSTREAM_RE.match(up):
            raise CaddySiteError(f"upstreams: {up!r} is not host:port")
    for cidr in site.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise CaddySiteError(f"trusted_proxies: {cidr!r} is not a CIDR") from None
    for host in site.hosts:
        if not _HOST_RE.match(host):
            raise CaddySiteError(f"hosts: {host!r} is not a host name")


def _check_listeners(site: CaddySite) -> None:
    for port_name in ("http_port", "https_port"):
        port = getattr(site, port_name)
        if not 0 < port < 65536:
            raise CaddySiteError(f"{port_name}: {port} is not a TCP port")
    if site.http_port == site.https_port:
        raise CaddySiteError("http_port and https_port must differ")


def _check_paths(site: CaddySite) -> None:
    if not site.static_root.startswith("/") or any(c.isspace() for c in site.static_root):
        raise CaddySiteError(
            f"static_root: {site.static_root!r} must be an absolute path without spaces"
        )
    for path in site.health_paths:
        if not _PATH_RE.match(path):
            raise CaddySiteError(f"health_paths: {path!r} is not an absolute URL path")
    if not site.admin.startswith("unix//") and not re.match(r"^[A-Za-z0-9.\-\[\]:]+$", site.admin):
        raise CaddySiteError(f"admin: {site.admin!r} is not host:port or unix//path")
    if site.acme_email is not None and ("@" not in site.acme_email or " " in site.acme_email):
        raise CaddySiteError(f"acme_email: {site.acme_email!r} is not an email address")


def _check_mode(site: CaddySite) -> None:
    for bind_name in ("http_bind", "https_bind"):
        bind = getattr(site, bind_name)
        if bind is not None and not re.match(r"^fd/\d+$", bind):
            raise CaddySiteError(f"{bind_name}: {bind!r} is not fd/N (a socket-activated fd)")
    if site.mode == "direct" and (site.http_bind is None) != (site.https_bind is None):
        raise CaddySiteError("http_bind/https_bind: direct mode needs both or neither")
    if site.mode == "alb" and not site.trusted_proxies:
        raise CaddySiteError(
            "trusted_proxies: alb mode needs the VPC CIDR, or client IPs and "
            "https detection are lost behind the ALB"
        )
    if site.mode == "direct" and not site.hosts:
        raise CaddySiteError("hosts: direct mode needs the DuckDNS name to get a certificate")


def _site_address(site: CaddySite) -> str:
    if site.mode == "alb":
        # Any Host (ALB health checks use the private IP); plain HTTP only.
        return "http://" if site.http_bind else f"http://:{site.http_port}"
    port = "" if site.https_port == 443 or site.https_bind else f":{site.https_port}"
    return ", ".join(f"{host}{port}" for host in site.hosts)


def render_caddyfile(site: CaddySite) -> str:
    """The Caddyfile for `site`, from the template jobtory_stack/templates/Caddyfile.j2."""
    return render_template("Caddyfile.j2", site=site, site_address=_site_address(site))
