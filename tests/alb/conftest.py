"""A real HAProxy on 127.0.0.1 with the rendered config, generated TLS and tiny Python targets."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from replica.alb_standin import (
    AlbRuntime,
    AlbStandin,
    TargetGroup,
    TlsPaths,
    generate_tls,
    render_haproxy_cfg,
)
from tests.conftest import free_port
from tests.helpers import require
from tests.images import ALB_IMAGE, remove, require_image, run_command

HOSTNAMES = ("jobtory.localhost", "www.jobtory.localhost")


class Target(ThreadingHTTPServer):
    """One target: /healthz answers `health_status`; /slow?s=N sleeps; else echoes headers."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.health_status = 200
        self.lock = threading.Lock()
        self.health_hits: list[tuple[float, int]] = []
        self.health_headers: dict[str, str] = {}
        self.requests: list[dict[str, str]] = []
        self.in_flight = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def checks_since(self, since: float, status: int) -> int:
        with self.lock:
            return sum(1 for t, s in self.health_hits if t >= since and s == status)

    def served(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Target

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        target = self.server
        url = urlsplit(self.path)
        if url.path == "/healthz":
            status = target.health_status
            with target.lock:
                target.health_hits.append((time.monotonic(), status))
                target.health_headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(status, b"{}")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        with target.lock:
            target.requests.append(headers)
            target.in_flight += 1
        try:
            if url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
            body = json.dumps({"target": target.name, "path": self.path, "headers": headers})
            self._reply(200, body.encode())
        finally:
            with target.lock:
                target.in_flight -= 1


@dataclass
class RunningAlb:
    config: AlbStandin
    tls: TlsPaths
    targets: list[Target]
    runtime: AlbRuntime
    proc: subprocess.Popen[bytes]  # `docker run` of haproxy in the alb image
    log: Path
    container: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.config.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_cert))

    def client(self) -> httpx.Client:
        client = httpx.Client(verify=self.ssl_context(), timeout=20.0)
        self.clients.append(client)
        return client

    def target_named(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def hit(self, n: int) -> dict[str, int]:
        """n requests through the ALB; how many each target answered."""
        counts: dict[str, int] = {}
        with httpx.Client(verify=self.ssl_context(), timeout=10.0) as client:
            for _ in range(n):
                resp = client.get(f"{self.https_url}/hit", headers={"Host": HOSTNAMES[0]})
                assert resp.status_code == 200, resp.text
                name = resp.json()["target"]
                counts[name] = counts.get(name, 0) + 1
        return counts


def wait_for(pred: Callable[[], object], timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll `pred` until true (bounded); returns the seconds it took."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - start


def health_is(alb: RunningAlb, target: str, health: str) -> Callable[[], bool]:
    return lambda: alb.runtime.target(target).health == health


@pytest.fixture(scope="session")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[str]]:
    """`haproxy` of the replica's alb image (HAProxy as the ALB stand-in runs it), as a
    command for a container named NAME that sees this session's temporary files."""
    require_image(ALB_IMAGE)
    require(shutil.which("openssl") is not None, "openssl is not installed")
    base = tmp_path_factory.getbasetemp()
    return lambda name: [*run_command(ALB_IMAGE, "haproxy", name, mounts=[base])]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory, haproxy: Callable[[str], list[str]]) -> TlsPaths:
    return generate_tls(tmp_path_factory.mktemp("alb-tls"), HOSTNAMES)


@pytest.fixture
def start_alb(
    haproxy: Callable[[str], list[str]], tls: TlsPaths, tmp_path: Path
) -> Iterator[Callable[..., RunningAlb]]:
    started: list[RunningAlb] = []

    def start(
        group: TargetGroup | None = None,
        n_targets: int = 2,
        extra_targets: tuple[str, ...] = (),
        public_https_port: int | None = None,
    ) -> RunningAlb:
        group = group or TargetGroup(
            name="jobtory-web",
            interval_seconds=1,
            timeout_seconds=1,
            healthy_threshold=2,
            unhealthy_threshold=2,
            deregistration_delay_seconds=5,
        )
        targets = [Target(f"t{i + 1}") for i in range(n_targets)]
        https_port = free_port()
        config = AlbStandin(
            hostnames=HOSTNAMES,
            targets=tuple(t.address for t in targets) + extra_targets,
            target_group=group,
            https_port=https_port,
            http_port=free_port(),
            public_https_port=public_https_port or https_port,
            cert_path=str(tls.bundle),
            runtime_port=free_port(),
            bind_address="127.0.0.1",
            runtime_address="127.0.0.1",
            resolver="",
            server_state_file=str(tmp_path / f"state-{len(started)}"),
        )
        cfg = tmp_path / f"haproxy-{len(started)}.cfg"
        cfg.write_text(render_haproxy_cfg(config))
        log = tmp_path / f"haproxy-{len(started)}.log"
        name = f"jobtory-test-haproxy-{https_port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*haproxy(name), "-W", "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
            )
        runtime = AlbRuntime(port=config.runtime_port, timeout=2.0)
        alb = RunningAlb(config, tls, targets, runtime, proc, log, name)
        started.append(alb)

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"haproxy exited ({proc.returncode}):\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", https_port), timeout=0.5):
                    pass
                return len(runtime.targets()) == len(config.targets)
            except Exception:
                return False

        wait_for(ready, 10, "haproxy to listen")
        # HAProxy starts a target as UP but one failure from DOWN; after its first passing
        # check it is fully healthy (an ALB starts targets in `initial` instead).
        for target in targets:
            wait_for(partial(target.checks_since, 0, 200), 10, f"{target.name} checked")
            runtime.wait_healthy(target.address, timeout=10)
        return alb

    yield start
    for alb in started:
        for client in alb.clients:
            client.close()
        alb.proc.terminate()  # docker run passes SIGTERM on to haproxy
        try:
            alb.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            alb.proc.kill()
            alb.proc.wait(timeout=5)
        remove(alb.container)
        for target in alb.targets:
            target.stop()
