"""A small typed client for Caddy's admin API (httpx); `deploy.py caddy` is its CLI.

The admin API is local only: a loopback TCP address (``localhost:2019``,
``127.0.0.1:2019``, ``[::1]:2019``) or a unix socket (``unix//run/caddy/admin.sock``).
Anything else is refused before a request is made.

Every failure is a :class:`CaddyError` with a one-line message; a refused config
carries Caddy's own error text, and Caddy keeps running the previous config.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from jobtory_stack.errors import CaddyConflict, CaddyError
from jobtory_stack.render.caddyfile import APP_PROXY_ID, CaddySite, render_caddyfile
from jobtory_stack.spec.constants import CADDY_ADMIN_DEFAULT, CADDY_CONFLICT_RETRIES

DEFAULT_ADMIN = CADDY_ADMIN_DEFAULT
JSON = Any


@dataclass(frozen=True)
class Upstream:
    """One entry of /reverse_proxy/upstreams."""

    address: str
    num_requests: int
    fails: int


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_admin_address(address: str) -> tuple[str, str | None]:
    """(base_url, unix_socket_path or None) for a local admin address; refuses the rest."""
    addr = address.strip()
    if addr.startswith("unix//"):
        path = addr[len("unix/") :]
        if not path.startswith("/") or len(path) < 2:
            raise CaddyError(f"admin address {address!r}: unix socket path must be absolute")
        return "http://localhost", path
    for prefix in ("http://", "tcp/"):
        if addr.startswith(prefix):
            addr = addr[len(prefix) :]
    addr = addr.rstrip("/")
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
        host = f"[{host}]"
    else:
        host, _, port = addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CaddyError(f"admin address {address!r} is not host:port or unix//path")
    if not _is_loopback_host(host):
        raise CaddyError(
            f"refusing admin address {address!r}: the Caddy admin API must stay local "
            "(localhost, 127.0.0.1, [::1] or unix//path)"
        )
    return f"http://{host}:{port}", None


def config_url(path: str) -> str:
    """'apps/http/servers' -> /config/apps/http/servers; /id/... and /config/... stay."""
    if path.startswith(("/id/", "/config/")) or path in ("/config", "/id"):
        return path
    return "/config/" + path.strip("/")


def _caddy_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body["error"]
    else:
        text = response.text.strip() or response.reason_phrase
    return " ".join(text.split())


def tag_app_proxy(config: JSON) -> JSON:
    """Give the first reverse_proxy handler the @id APP_PROXY_ID (in place; returns config).

    The Caddyfile cannot set @id; the helper adds it after adapting, so upstreams can
    be managed at /id/app_proxy/upstreams.
    """
    for _path, node in _walk_handlers(config):
        if node.get("@id") == APP_PROXY_ID:
            return config
    for _path, node in _walk_handlers(config):
        node["@id"] = APP_PROXY_ID
        break
    return config


def _walk_handlers(node: JSON, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(config path, handler) of every reverse_proxy handler, depth first."""
    if isinstance(node, dict):
        if node.get("handler") == "reverse_proxy":
            yield path, node
        for key, value in node.items():
            yield from _walk_handlers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_handlers(value, f"{path}/{index}")


class CaddyAdmin:
    """Caddy's admin API over httpx; local addresses only."""

    def __init__(
        self,
        address: str = DEFAULT_ADMIN,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        base_url, uds = parse_admin_address(address)
        if transport is None:
            transport = httpx.HTTPTransport(uds=uds) if uds else httpx.HTTPTransport()
        self._client = httpx.Client(
            base_url=base_url, transport=transport, timeout=timeout, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CaddyAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: JSON = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        etag: str | None = None,
        what: str | None = None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        content: bytes | None = raw
        if body is not None and raw is None:
            content = json.dumps(body).encode()
        if content is not None:
            headers["Content-Type"] = content_type
        if etag is not None:
            headers["If-Match"] = etag
        try:
            response = self._client.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException:
            raise CaddyError(
                f"Caddy admin API at {self.address} did not answer within {self.timeout:g} s"
            ) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            reason = _connect_reason(exc)
            raise CaddyError(
                f"Caddy admin API at {self.address} is not reachable ({reason}) - is caddy running?"
            ) from None
        except httpx.HTTPError as exc:
            raise CaddyError(f"Caddy admin API at {self.address}: {exc}") from None
        if response.status_code == 412:
            raise CaddyConflict(
                f"{method} {url}: the config changed since it was read (ETag mismatch)", 412
            )
        if response.status_code >= 400:
            raise CaddyError(
                f"Caddy refused {what or f'{method} {url}'}: {_caddy_message(response)}",
                response.status_code,
            )
        return response

    # -- config by path -----------------------------------------------------

    def get(self, path: str = "") -> tuple[JSON, str]:
        """(value, etag) at a config path ('' = the whole config)."""
        response = self._request("GET", config_url(path))
        etag = response.headers.get("etag", "")
        return (response.json() if response.content.strip() else None), etag

    def config(self, path: str = "") -> JSON:
        return self.get(path)[0]

    def patch(self, path: str, value: JSON, etag: str | None = None) -> None:
        """Replace an existing value (If-Match when etag is given)."""
        self._request("PATCH", config_url(path), body=value, etag=etag)

    def put(self, path: str, value: JSON, etag: str | None = None) -> None:
        """Create a new value (insert at an array index)."""
        self._request("PUT", config_url(path), body=value, etag=etag)

    def post(self, path: str, value: JSON, etag: str | None = None) -> None:
        """Create or replace; on an array, append."""
        self._request("POST", config_url(path), body=value, etag=etag)

    def delete(self, path: str, etag: str | None = None) -> None:
        self._request("DELETE", config_url(path), etag=etag)

    def update(
        self,
        path: str,
        fn: Callable[[JSON], JSON],
        retries: int = CADDY_CONFLICT_RETRIES,
        backoff: float = 0.05,
    ) -> JSON:
        """Read-modify-write with If-Match: on 412, re-read and re-apply `fn`.

        A concurrent change is never overwritten: `fn` always sees the latest value.
        Returns the value written; raises CaddyConflict after `retries` conflicts.
        """
        for attempt in range(retries + 1):
            value, etag = self.get(path)
            new = fn(copy.deepcopy(value))
            if new == value:
                return value
            try:
                self.patch(path, new, etag=etag)
                return new
            except CaddyConflict:
                if attempt == retries:
                    break
                time.sleep(backoff * (attempt + 1))
        raise CaddyConflict(
            f"{config_url(path)}: still conflicting after {retries} retries - "
            "someone else keeps changing it",
            412,
        )

    # -- whole configs -------------------------------------------------------

    def adapt(self, caddyfile: str) -> JSON:
        """The JSON config of a Caddyfile (Caddy's own adapter and error message)."""
        response = self._request(
            "POST",
            "/adapt",
            raw=caddyfile.encode(),
            content_type="text/caddyfile",
            what="the Caddyfile",
        )
        data = response.json()
        if not isinstance(data, dict) or "result" not in data:
            raise CaddyError(f"unexpected /adapt answer from {self.address}")
        return data["result"]

    def load(self, config: JSON) -> bool:
        """Load a JSON config; False (and no request) when it is already running.

        Sent as POST /config/ with the running config's ETag (If-Match), so a
        concurrent change is reported (CaddyConflict) rather than overwritten.
        When Caddy refuses the config it keeps running the old one.
        """
        current, etag = self.get("")
        if current == config:
            return False
        self._request("POST", "/config/", body=config, etag=etag or None, what="the config")
        return True

    def load_caddyfile(self, caddyfile: str) -> bool:
        """adapt + tag the app proxy + load."""
        return self.load(tag_app_proxy(self.adapt(caddyfile)))

    def adapt_site(self, site: CaddySite) -> JSON:
        """render + adapt + tag the app proxy: the JSON config of `site`."""
        return tag_app_proxy(self.adapt(render_caddyfile(site)))

    def switch_mode(
        self,
        site: CaddySite,
        linger: float = 2.0,
        cert_timeout: float = 60.0,
    ) -> bool:
        """Switch to `site` (alb <-> direct) without a restart and without refusing
        a request; False when it is already running.

        Every step is a graceful reload: listeners both configs share (http_port)
        are handed over, in-flight requests finish on the old config. A mode change
        goes through a bridge config that serves both ways at once:

        - alb -> direct: bridge = the alb server on http_port + the https site with
          its redirects held back; wait until https_port presents a certificate for
          every host (``cert_timeout``), then load direct (http_port redirects).
          No certificate in time: the old config is restored and CaddyError raised.
        - direct -> alb: bridge = the alb server on http_port + the https site still
          up for clients that were just redirected; after ``linger`` s load alb.
        """
        target = self.adapt_site(site)
        current = self.config("")
        if current == target:
            return False
        before = config_mode(current)
        if before is None or before == site.mode or linger < 0:
            return self.load(target)
        if site.mode == "direct":
            self.load(bridge_config(alb=current, direct=target))
            try:
                wait_for_certificates(site, timeout=cert_timeout)
            except CaddyError:
                self.load(current)
                raise
        else:
            self.load(bridge_config(alb=target, direct=current))
            time.sleep(linger)
        return self.load(target)

    # -- upstreams -----------------------------------------------------------

    def upstreams(self) -> list[Upstream]:
        """Every reverse-proxy upstream with its in-flight request and failure counts."""
        response = self._request("GET", "/reverse_proxy/upstreams")
        return [
            Upstream(str(u.get("address")), int(u.get("num_requests", 0)), int(u.get("fails", 0)))
            for u in (response.json() or [])
        ]

    def app_proxy_path(self) -> str:
        """Config path of the app's reverse_proxy handler (@id, else the first one)."""
        try:
            self.get(f"/id/{APP_PROXY_ID}")
            return f"/id/{APP_PROXY_ID}"
        except CaddyError as exc:
            if exc.status is None or exc.status == 412:
                raise  # no answer: not a missing @id
        for path, _node in _walk_handlers(self.config("")):
            return "/config" + path
        raise CaddyError("the running config has no reverse_proxy handler")

    def proxy_upstreams(self) -> list[str]:
        """The dial addresses configured on the app proxy."""
        value = self.config(self.app_proxy_path() + "/upstreams") or []
        return [str(u.get("dial")) for u in value]

    def add_upstream(self, dial: str) -> bool:
        """Put `dial` (host:port) into rotation; False when already there."""
        path = self.app_proxy_path() + "/upstreams"
        before = self.config(path) or []
        if any(u.get("dial") == dial for u in before):
            return False
        self.update(path, lambda ups: [*(ups or []), {"dial": dial}])
        return True

    def remove_upstream(self, dial: str) -> bool:
        """Take `dial` out of rotation (new requests only); False when not there."""
        path = self.app_proxy_path() + "/upstreams"
        before = self.config(path) or []
        if not any(u.get("dial") == dial for u in before):
            return False
        if len(before) == 1:
            raise CaddyError(f"refusing to remove {dial}: it is the last upstream")
        self.update(path, lambda ups: [u for u in ups if u.get("dial") != dial])
        return True

    def drain(self, dial: str, timeout: float = 30.0, poll: float = 0.1) -> None:
        """Remove `dial` from rotation, then wait until it has no request in flight."""
        self.remove_upstream(dial)
        deadline = time.monotonic() + timeout
        while True:
            busy = [u for u in self.upstreams() if u.address == dial and u.num_requests > 0]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise CaddyError(
                    f"{dial} still has {busy[0].num_requests} request(s) in flight "
                    f"after {timeout:g} s"
                )
            time.sleep(poll)

    # -- health --------------------------------------------------------------

    def wait_healthy(self, url: str | None = None, timeout: float = 30.0) -> None:
        """Wait until the admin API answers and, if given, `url` returns 2xx.

        `url` is a local health URL; its certificate is not verified (the replica's
        `tls internal` CA is not in the system store), only its status.
        """
        deadline = time.monotonic() + timeout
        last = "not tried"
        while True:
            try:
                self.get("")
                if url is None:
                    return
                with httpx.Client(timeout=min(self.timeout, 5.0), verify=False) as client:
                    response = client.get(url)
                if response.is_success:
                    return
                last = f"{url} answered {response.status_code}"
            except CaddyError as exc:
                last = str(exc)
            except httpx.HTTPError as exc:
                last = f"{url}: {type(exc).__name__}"
            if time.monotonic() > deadline:
                raise CaddyError(f"Caddy not healthy after {timeout:g} s: {last}")
            time.sleep(0.2)


def config_mode(config: JSON) -> str | None:
    """'alb' when every HTTP server has automatic HTTPS off, 'direct' otherwise."""
    servers = ((config or {}).get("apps", {}).get("http", {}) or {}).get("servers") or {}
    if not servers:
        return None
    alb = all((srv.get("automatic_https") or {}).get("disable") for srv in servers.values())
    return "alb" if alb else "direct"


def bridge_config(alb: JSON, direct: JSON) -> JSON:
    """Both modes at once: the alb config's plain-HTTP server(s) on the HTTP listener,
    plus the direct config's HTTPS server(s) (and its TLS/PKI apps) with the
    HTTP->HTTPS redirects held back. Direct servers on the HTTP listener (the
    explicit redirect of socket-activated configs) give way to the alb ones."""
    bridge = copy.deepcopy(direct)
    servers = bridge.setdefault("apps", {}).setdefault("http", {}).setdefault("servers", {})
    alb_servers = alb["apps"]["http"]["servers"]
    alb_listen = {addr for srv in alb_servers.values() for addr in srv.get("listen", [])}
    for name in list(servers):
        if alb_listen & set(servers[name].get("listen", [])):
            del servers[name]
        else:
            servers[name].setdefault("automatic_https", {})["disable_redirects"] = True
    for name, srv in alb_servers.items():
        servers[f"bridge_{name}"] = _strip_ids(copy.deepcopy(srv))  # @ids must be unique
    return bridge


def _strip_ids(node: JSON) -> JSON:
    if isinstance(node, dict):
        node.pop("@id", None)
        for value in node.values():
            _strip_ids(value)
    elif isinstance(node, list):
        for value in node:
            _strip_ids(value)
    return node


def wait_for_certificates(site: CaddySite, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    """Until https_port completes a TLS handshake (SNI) for every host of `site`."""
    deadline = time.monotonic() + timeout
    pending = list(site.hosts)
    last = "not tried"
    while pending:
        name = pending[0]
        try:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # presence, not trust: that is the client's job
            with (
                socket.create_connection((host, site.https_port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname=name) as tls,
            ):
                if tls.getpeercert(binary_form=True):
                    pending.pop(0)
                    continue
        except (OSError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise CaddyError(
                f"no certificate for {name} on :{site.https_port} after {timeout:g} s ({last})"
            )
        time.sleep(0.1)


def _connect_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "no such file" in text:
        return "no such socket"
    if "permission" in text:
        return "permission denied"
    if "disconnected" in text or "reset" in text:
        return "connection closed"
    return text.split("\n")[0] or type(exc).__name__
