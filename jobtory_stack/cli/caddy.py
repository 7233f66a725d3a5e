"""`deploy.py caddy`: the Caddy admin-API helper's commands (jobtory_stack.caddy.admin).

Its own errors print as `caddy: error: ...` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobtory_stack.caddy.admin import (
    DEFAULT_ADMIN,
    JSON,
    CaddyAdmin,
    config_url,
    tag_app_proxy,
)
from jobtory_stack.errors import CaddyError
from jobtory_stack.render.caddyfile import CaddySite, render_caddyfile

DESCRIPTION = "A small typed client for Caddy's admin API (httpx), and the `deploy.py caddy` CLI."


def _read_source(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else Path(arg).read_text()


def _print_json(value: JSON) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _site_from_args(args: argparse.Namespace) -> CaddySite:
    return CaddySite(
        mode=args.mode,
        hosts=tuple(args.host or ()),
        upstreams=tuple(args.upstream or ()),
        trusted_proxies=tuple(args.trusted_proxy or ()),
        static_root=args.static_root,
        admin=args.site_admin or args.admin,
        http_port=args.http_port,
        https_port=args.https_port,
        tls_internal=args.tls_internal,
        acme_email=args.email,
        http_bind=args.http_bind,
        https_bind=args.https_bind,
    )


def _cmd_adapt(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    _print_json(tag_app_proxy(admin.adapt(_read_source(args.caddyfile))))
    return 0


def _cmd_load(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    text = _read_source(args.file)
    changed = admin.load(json.loads(text)) if args.json else admin.load_caddyfile(text)
    print("loaded: config changed" if changed else "unchanged: already running")
    return 0


def _cmd_get(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    value, etag = admin.get(args.path)
    _print_json(value)
    if args.etag:
        print(f"ETag: {etag}", file=sys.stderr)
    return 0


def _cmd_patch(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    value = json.loads(args.value)
    if args.if_match:
        admin.patch(args.path, value, etag=args.if_match)
    else:
        admin.update(args.path, lambda _old: value)
    print(f"patched {config_url(args.path)}")
    return 0


def _cmd_upstreams(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    configured = set(admin.proxy_upstreams())
    print(f"{'address':<30} {'in rotation':<12} {'in flight':>9} {'fails':>6}")
    for up in admin.upstreams():
        rotation = "yes" if up.address in configured else "no"
        print(f"{up.address:<30} {rotation:<12} {up.num_requests:>9} {up.fails:>6}")
    return 0


def _cmd_add(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    changed = admin.add_upstream(args.upstream)
    print(f"{args.upstream}: {'added' if changed else 'already in rotation'}")
    return 0


def _cmd_remove(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    changed = admin.remove_upstream(args.upstream)
    print(f"{args.upstream}: {'removed' if changed else 'not in rotation'}")
    return 0


def _cmd_drain(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    admin.drain(args.upstream, timeout=args.drain_timeout)
    print(f"{args.upstream}: drained (out of rotation, nothing in flight)")
    return 0


def _cmd_switch(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    changed = admin.switch_mode(_site_from_args(args))
    print(f"mode {args.mode}: {'switched' if changed else 'already running'}")
    return 0


def _cmd_render(admin: CaddyAdmin | None, args: argparse.Namespace) -> int:
    sys.stdout.write(render_caddyfile(_site_from_args(args)))
    return 0


def _cmd_wait(admin: CaddyAdmin, args: argparse.Namespace) -> int:
    admin.wait_healthy(args.url, timeout=args.wait_timeout)
    print("caddy is healthy")
    return 0


Handler = Callable[[CaddyAdmin, argparse.Namespace], int]


def _runner(handler: Handler, needs_admin: bool = True) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            if not needs_admin:
                return handler(None, args)  # type: ignore[arg-type]
            with CaddyAdmin(args.admin, timeout=args.timeout) as admin:
                return handler(admin, args)
        except (CaddyError, OSError, ValueError) as exc:
            print(f"caddy: error: {exc}", file=sys.stderr)
            return 1

    return run


def _add_site_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("alb", "direct"), required=True)
    parser.add_argument("--host", action="append", help="served host (direct: the DuckDNS name)")
    parser.add_argument("--upstream", action="append", required=True, help="gunicorn host:port")
    parser.add_argument("--trusted-proxy", action="append", help="CIDR (alb: the VPC range)")
    parser.add_argument("--static-root", required=True, help="the front end's directory")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--tls-internal", action="store_true", help="local CA (replica)")
    parser.add_argument("--email", help="ACME account email (direct)")
    parser.add_argument("--http-bind", help="socket-activated http listener, e.g. fd/3")
    parser.add_argument("--https-bind", help="socket-activated https listener, e.g. fd/4")
    parser.add_argument(
        "--site-admin", help="admin address written into the config (default: --admin)"
    )


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `caddy` and its sub-commands to an argparse subparsers object.

    Each leaf sets ``handler(args) -> int`` (0 ok, 1 error) via set_defaults.
    """
    caddy: argparse.ArgumentParser = subparsers.add_parser(
        "caddy", help="Caddy admin API (local only)", description=DESCRIPTION
    )
    caddy.add_argument(
        "--admin",
        default=os.environ.get("CADDY_ADMIN", DEFAULT_ADMIN),
        help="admin address: localhost:2019 or unix//path (env CADDY_ADMIN)",
    )
    caddy.add_argument("--timeout", type=float, default=5.0, help="seconds per admin request")
    sub = caddy.add_subparsers(dest="caddy_command", required=True, metavar="COMMAND")

    p = sub.add_parser("adapt", help="Caddyfile -> JSON (Caddy's adapter)")
    p.add_argument("caddyfile", help="path or - for stdin")
    p.set_defaults(handler=_runner(_cmd_adapt))

    p = sub.add_parser("load", help="load a Caddyfile (or --json config); no-op when identical")
    p.add_argument("file", help="path or - for stdin")
    p.add_argument("--json", action="store_true", help="the file is JSON config")
    p.set_defaults(handler=_runner(_cmd_load))

    p = sub.add_parser("get", help="read config at a path (e.g. apps/http/servers)")
    p.add_argument("path", nargs="?", default="")
    p.add_argument("--etag", action="store_true", help="print the ETag to stderr")
    p.set_defaults(handler=_runner(_cmd_get))

    p = sub.add_parser("patch", help="replace the value at a path (If-Match, retried on 412)")
    p.add_argument("path")
    p.add_argument("value", help="JSON value")
    p.add_argument("--if-match", help="fail on conflict instead of re-reading")
    p.set_defaults(handler=_runner(_cmd_patch))

    p = sub.add_parser("upstreams", help="list reverse-proxy upstreams")
    p.set_defaults(handler=_runner(_cmd_upstreams))

    for name, fn, text in (
        ("add-upstream", _cmd_add, "put host:port into rotation"),
        ("remove-upstream", _cmd_remove, "take host:port out of rotation"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("upstream", help="host:port")
        p.set_defaults(handler=_runner(fn))

    p = sub.add_parser("drain", help="remove from rotation, wait until nothing is in flight")
    p.add_argument("upstream", help="host:port")
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.set_defaults(handler=_runner(_cmd_drain))

    p = sub.add_parser("switch-mode", help="render, adapt and load alb or direct mode")
    _add_site_args(p)
    p.set_defaults(handler=_runner(_cmd_switch))

    p = sub.add_parser("render", help="print the Caddyfile for a mode (no Caddy needed)")
    _add_site_args(p)
    p.set_defaults(handler=_runner(_cmd_render, needs_admin=False))

    p = sub.add_parser("wait", help="wait until the admin API (and --url) answer")
    p.add_argument("--url", help="e.g. http://127.0.0.1/healthz")
    p.add_argument("--wait-timeout", type=float, default=30.0)
    p.set_defaults(handler=_runner(_cmd_wait))
    return caddy
