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
from typing import Any, NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from jobtory_stack.caddy.admin import CaddyAdmin, wait_for_certificates
from jobtory_stack.errors import CaddyError
from jobtory_stack.migrate.flow import with_mode
from jobtory_stack.render.caddyfile import CaddySite, render_caddyfile
from jobtory_stack.render.sites import caddy_site
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment
from tests.alb.conftest import haproxy, start_alb, tls  # noqa: F401  (fixtures)
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


# ---- a tiny authoritative DNS responder on 127.0.0.1 (UDP and TCP) ------------------------


class DnsQuery(NamedTuple):
    transport: str  # "udp" or "tcp"
    name: str  # lowercase, no trailing dot
    rdtype: str  # "NS", "SOA", "A", ...
    recursion: bool  # RD set


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@dataclass
class DnsResponder:
    """An authoritative server on one 127.0.0.1 port, UDP and TCP, built on dnspython.

    `records`: name -> NS names, answered for `<name> NS` (answer section, AA);
    `delegations`: name -> NS names, answered as a parent zone's referral (authority
    section, no AA); `others`: (name, type) -> record texts (SOA, A); NXDOMAIN for any
    other name. `truncate_udp`: UDP answers are empty with TC set (the full answer is on
    TCP); `silent_udp`: UDP queries get no answer; `refuse`: every answer is REFUSED.
    Every query is logged in `queries`.
    """

    udp: socket.socket
    tcp: socket.socket
    records: dict[str, list[str]] = field(default_factory=dict)
    delegations: dict[str, list[str]] = field(default_factory=dict)
    others: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    truncate_udp: bool = False
    silent_udp: bool = False
    refuse: bool = False
    queries: list[DnsQuery] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.udp.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve_udp(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self.answer(data, "udp")
                if reply is not None:
                    self.udp.sendto(reply, peer)
            except (OSError, ValueError, dns.exception.DNSException):
                continue

    def serve_tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    (size,) = struct.unpack(">H", _recv_exact(conn, 2))
                    reply = self.answer(_recv_exact(conn, size), "tcp")
                    if reply is not None:
                        conn.sendall(struct.pack(">H", len(reply)) + reply)
                except (OSError, ValueError, dns.exception.DNSException):
                    continue

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        recursion = bool(query.flags & dns.flags.RD)
        self.queries.append(DnsQuery(transport, name, rdtype, recursion))
        if transport == "udp" and self.silent_udp:
            return None
        response = dns.message.make_response(query)
        if self.refuse:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        if transport == "udp" and self.truncate_udp:
            response.flags |= dns.flags.TC
            return response.to_wire()

        def rrset(rtype: str, texts: list[str]) -> dns.rrset.RRset:
            if rtype == "NS":
                texts = [_fqdn(t) for t in texts]
            return dns.rrset.from_text_list(question.name, 300, "IN", rtype, texts)

        if rdtype == "NS" and name in self.delegations:
            response.authority.append(rrset("NS", self.delegations[name]))
        elif rdtype == "NS" and name in self.records:
            response.flags |= dns.flags.AA
            response.answer.append(rrset("NS", self.records[name]))
        elif (name, rdtype) in self.others:
            response.flags |= dns.flags.AA
            response.answer.append(rrset(rdtype, self.others[(name, rdtype)]))
        elif name not in self.records and all(n != name for n, _ in self.others):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()  # (else NODATA: the name exists, not that type)


def _udp_and_tcp_on_one_port() -> tuple[socket.socket, socket.socket]:
    for _ in range(20):  # the UDP port may be taken for TCP: try another
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        return udp, tcp
    raise RuntimeError("no free port for UDP and TCP on 127.0.0.1")


@pytest.fixture
def dns_responder() -> Iterator[DnsResponder]:
    udp, tcp = _udp_and_tcp_on_one_port()
    for sock in (udp, tcp):
        sock.settimeout(0.2)  # the serving loops see `stop` within 0.2 s
    responder = DnsResponder(udp, tcp)
    threads = [
        threading.Thread(target=responder.serve_udp, daemon=True),
        threading.Thread(target=responder.serve_tcp, daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield responder
    responder.stop.set()
    for thread in threads:
        thread.join(timeout=5)
    udp.close()
    tcp.close()


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
