"""Fixtures for `deploy.py migrate`: moto (ACM issuing at once), a local DNS responder,
a real Caddy in today's direct mode and the HAProxy ALB stand-in in front of it."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from jobtory_stack.caddy.admin import CaddyAdmin, wait_for_certificates
from jobtory_stack.errors import CaddyError
from jobtory_stack.migrate.flow import encode_name, read_name, with_mode
from jobtory_stack.render.caddyfile import CaddySite, render_caddyfile
from jobtory_stack.render.sites import caddy_site
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment
from tests.alb.conftest import haproxy_bin, start_alb, tls  # noqa: F401  (fixtures)
from tests.caddy.conftest import listening_socket, spawn_caddy, start_echo, stop_caddy
from tests.conftest import free_port
from tests.helpers import ROOT

DUCKDNS = "jobtory.duckdns.org"
# the SSM values derived from the domain: what migrate rewrites in step 7
URL_PARAMETERS = (
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "FRONTEND_BASE_URL",
    "GOOGLE_REDIRECT_URI",
    "VITE_API_BASE",
)


@pytest.fixture
def local_env() -> Environment:
    """The replica's environment (domain jobtory.localhost, as the ALB stand-in's TLS)."""
    return load_stack(ROOT / "stack.toml").env("local")


# ---- a tiny authoritative DNS responder on 127.0.0.1 (UDP) ---------------------------------


@dataclass
class DnsResponder:
    """Answers NS queries from `records` (name -> NS names); NXDOMAIN otherwise."""

    sock: socket.socket
    records: dict[str, list[str]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(data), peer)
            except (OSError, struct.error, ValueError):
                continue

    def answer(self, query: bytes) -> bytes:
        qid, _flags, _qd, _an, _ns, _ar = struct.unpack(">HHHHHH", query[:12])
        name, end = read_name(query, 12)
        question = query[12 : end + 4]
        self.queries.append(name)
        ns = self.records.get(name.rstrip("."))
        if ns is None:
            return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        answers = b""
        for target in ns:
            rdata = encode_name(target)
            # the owner name as a compression pointer to the question (offset 12)
            answers += struct.pack(">HHHIH", 0xC00C, 2, 1, 300, len(rdata)) + rdata
        header = struct.pack(">HHHHHH", qid, 0x8180, 1, len(ns), 0, 0)
        return header + question + answers


@pytest.fixture
def dns_responder() -> Iterator[DnsResponder]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    responder = DnsResponder(sock)
    thread = threading.Thread(target=responder.serve, daemon=True)
    thread.start()
    yield responder
    responder.stop.set()
    thread.join(timeout=5)
    sock.close()


# ---- a real Caddy in direct mode (today's host) --------------------------------------------


@dataclass
class DirectCaddy:
    proc: subprocess.Popen[bytes]
    admin_address: str
    site: CaddySite  # the direct-mode site it runs at first
    overrides: dict[str, Any]  # what the migration's alb site must keep (ports, binds, ...)
    home: Path
    log: Path

    def ca_root(self) -> Path:
        return self.home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def mode(self) -> str | None:
        from jobtory_stack.caddy.admin import config_mode

        with CaddyAdmin(self.admin_address) as admin:
            return config_mode(admin.config(""))


@contextmanager
def running_direct_caddy(env: Environment, tmp_path: Path, upstream: str) -> Iterator[DirectCaddy]:
    """Caddy as on today's host: direct mode, `tls internal` for the DuckDNS name,
    socket-activated listeners on free 127.0.0.1 ports, admin API on 127.0.0.1."""
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("<!doctype html><title>jobtory</title>front end\n")
    home = tmp_path / "caddy"
    home.mkdir()
    admin_address = f"127.0.0.1:{free_port()}"
    # socket activation, as on the hosts: every reload keeps the same kernel sockets
    http_sock, https_sock = listening_socket(), listening_socket()
    overrides: dict[str, Any] = {
        "upstreams": (upstream,),
        "static_root": str(www),
        "trusted_proxies": ("127.0.0.0/8",),  # the ALB stand-in connects from loopback
        "http_port": http_sock.getsockname()[1],
        "https_port": https_sock.getsockname()[1],
        "http_bind": f"fd/{http_sock.fileno()}",
        "https_bind": f"fd/{https_sock.fileno()}",
    }
    old = with_mode(env, "direct")
    site = replace(caddy_site(old, mode="direct"), admin=admin_address, **overrides)
    assert site.hosts == (DUCKDNS,) and site.tls_internal
    sockets = (http_sock, https_sock)
    proc, log = spawn_caddy(site, home, sockets)
    try:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with CaddyAdmin(admin_address) as admin:
                        admin.load_caddyfile(render_caddyfile(site))  # the @id, as the helper
                    break
                except CaddyError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            wait_for_certificates(site, timeout=20)
        except Exception:
            pytest.fail(f"caddy did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield DirectCaddy(proc, admin_address, site, overrides, home, log)
    finally:
        stop_caddy(proc, sockets)


@pytest.fixture
def direct_caddy(local_env: Environment, tmp_path: Path) -> Iterator[DirectCaddy]:
    """Today's Caddy in front of an echo upstream (a gunicorn stand-in)."""
    upstream = start_echo("gunicorn")
    try:
        with running_direct_caddy(local_env, tmp_path, upstream.dial) as caddy:
            yield caddy
    finally:
        upstream.server.shutdown()
        upstream.server.server_close()


def start_tagged_instance(ec2: Any, env: Environment, name: str) -> str:
    """One running EC2 instance tagged as the env's (as its hosts are); its id."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "stack", "Value": env.stack_name}, {"Key": "env", "Value": env.name}]
    tags.append({"Key": "Name", "Value": name})
    reservation = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return str(reservation["Instances"][0]["InstanceId"])


@pytest.fixture
def moto_host(aws_env: str) -> Callable[[Environment], str]:
    """Start one running EC2 instance tagged as the env's (today's host); its id."""

    def start(env: Environment) -> str:
        import boto3

        ec2 = boto3.client("ec2", region_name=env.region, endpoint_url=aws_env)
        return start_tagged_instance(ec2, env, "today's host")

    return start
