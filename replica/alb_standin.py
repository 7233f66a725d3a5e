"""The ALB stand-in (replica only): HAProxy config, a locally generated CA + leaf, and
the command line around the product's runtime client (jobtory_stack.hosts.standin).

The alb image runs this module with Debian's python3: it imports only the standard
library, jinja2 (python3-jinja2) and the product's stand-in client, the files that
scripts/build-images gathers for the image, so the container and the host share one
renderer. See docs/alb-standin.md for what it models from an ALB.

    python -m replica.alb_standin render --output haproxy.cfg   # from ALB_*/HC_* env
    python -m replica.alb_standin tls --dir /etc/alb/tls
    python -m replica.alb_standin status
    python -m replica.alb_standin deregister ec2-1:80
    python -m replica.alb_standin register ec2-1:80 --wait
    python -m replica.alb_standin ca-instructions --dir /etc/alb/tls
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.standin import (
    BACKEND_PREFIX,
    FAILOPEN_SUFFIX,
    AlbRuntime,
    Health,
    TargetState,
)
from jobtory_stack.spec.constants import MATCHER

__all__ = [
    "AlbError",
    "AlbRuntime",
    "AlbStandin",
    "Health",
    "TargetGroup",
    "TargetState",
    "TlsPaths",
    "ca_instructions",
    "generate_tls",
    "main",
    "render_env_file",
    "render_haproxy_cfg",
    "spec_env",
]

# A configuration, TLS or runtime-API problem, with a one-line message. The runtime
# client is the product's (it raises HostsError), so the stand-in raises the same class:
# callers catch one error whichever part failed.
AlbError = HostsError

TEMPLATES = Path(__file__).resolve().parent / "templates"


_TG_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!&()*+,;=:@%/?-]{0,1023}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _check_matcher(matcher: str) -> None:
    if not MATCHER.match(matcher):  # ALB syntax: 200, 200,202, 200-299 (codes 200-499)
        raise AlbError(f"matcher {matcher!r}: use ALB syntax like '200', '200,202' or '200-299'")
    for part in matcher.split(","):
        low, _, high = part.partition("-")
        codes = (int(low), int(high or low))
        if not all(200 <= code <= 499 for code in codes) or codes[0] > codes[1]:
            raise AlbError(f"matcher {matcher!r}: codes must be ascending and within 200-499")


@dataclass(frozen=True)
class TargetGroup:
    """The spec's target group: port, active health check and deregistration delay."""

    name: str
    port: int = 80
    health_check_path: str = "/healthz"
    interval_seconds: int = 10
    timeout_seconds: int = 5
    healthy_threshold: int = 3
    unhealthy_threshold: int = 2
    matcher: str = "200"
    deregistration_delay_seconds: int = 30

    def __post_init__(self) -> None:
        if not _TG_NAME_RE.match(self.name):
            raise AlbError(f"target group name {self.name!r}: 1-32 letters, digits or '-'")
        if not 1 <= self.port <= 65535:
            raise AlbError(f"target group port {self.port}: must be 1-65535")
        if not _PATH_RE.match(self.health_check_path):
            raise AlbError(
                f"health check path {self.health_check_path!r}: must start with '/' and use "
                "URL characters only (no spaces, quotes, '#', '$' or '\\')"
            )
        if not 1 <= self.timeout_seconds <= self.interval_seconds:
            raise AlbError(
                f"health check timeout {self.timeout_seconds}s must be >= 1 and "
                f"<= the interval ({self.interval_seconds}s)"
            )
        for what, value in (
            ("healthy_threshold", self.healthy_threshold),
            ("unhealthy_threshold", self.unhealthy_threshold),
        ):
            if not 1 <= value <= 10:
                raise AlbError(f"{what} {value}: must be 1-10")
        _check_matcher(self.matcher)
        if not 0 <= self.deregistration_delay_seconds <= 3600:
            raise AlbError("deregistration delay: must be 0-3600 seconds")


def split_target(target: str, default_port: int) -> tuple[str, int]:
    """'web:80' -> ('web', 80); 'web' -> ('web', default_port)."""
    host, sep, port_text = target.strip().rpartition(":")
    if not sep:
        host, port_text = target.strip(), str(default_port)
    if not _HOST_RE.match(host) or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AlbError(f"target {target!r}: expected host:port (e.g. web:80 or 10.0.1.5:80)")
    return host, int(port_text)


@dataclass(frozen=True)
class AlbStandin:
    """One load balancer: listeners, served hostnames, targets and their target group.

    `bind_address` "" listens on every interface (the container); tests use 127.0.0.1.
    The runtime API (admin level: it drains targets) listens on the container's loopback,
    plus `runtime_published_address`: the container's address on the edge network, where
    the published 127.0.0.1 port arrives. Never on every interface: the app's network
    (the "VPC", where the hosts run) must not reach it.
    `resolver` is Docker's embedded DNS; "" leaves targets to libc resolution only.
    `run_as` drops HAProxy workers to that user (the image uses "haproxy").
    `server_state_file` keeps targets' drain/maint/health across reloads (`save_state`).
    """

    hostnames: tuple[str, ...]
    targets: tuple[str, ...]
    target_group: TargetGroup
    https_port: int = 443
    http_port: int = 80
    public_https_port: int = 443
    cert_path: str = "/etc/alb/tls/site.pem"
    runtime_port: int = 9999
    hsts_max_age: int = 31536000
    bind_address: str = ""
    runtime_address: str = "127.0.0.1"
    runtime_published_address: str = ""
    resolver: str = "127.0.0.11:53"
    run_as: str = ""
    server_state_file: str = ""

    def __post_init__(self) -> None:
        if not self.hostnames:
            raise AlbError("hostnames: at least one served hostname is required")
        for name in self.hostnames:
            if not _HOST_RE.match(name):
                raise AlbError(f"hostname {name!r}: not a DNS name")
        if not self.targets:
            raise AlbError("targets: at least one host:port is required")
        addresses = self.target_addresses
        if len(set(addresses)) != len(addresses):
            raise AlbError(f"targets: duplicates in {list(self.targets)}")
        for what, port in (
            ("https_port", self.https_port),
            ("http_port", self.http_port),
            ("public_https_port", self.public_https_port),
            ("runtime_port", self.runtime_port),
        ):
            if not 1 <= port <= 65535:
                raise AlbError(f"{what} {port}: must be 1-65535")
        if self.hsts_max_age < 0:
            raise AlbError("hsts_max_age: must be >= 0 (0 sends no HSTS header)")
        for what, address in (
            ("runtime_address", self.runtime_address),
            ("ALB_LISTEN_RUNTIME_ADDRESS", self.runtime_published_address),
        ):
            if address and not _one_address(address):
                raise AlbError(
                    f"{what} {address!r}: the runtime API listens on one IPv4 address "
                    "(the edge network's), never on every interface"
                )

    @property
    def target_addresses(self) -> tuple[str, ...]:
        """Targets as host:port (a target without a port gets the target group's port)."""
        out = []
        for target in self.targets:
            host, port = split_target(target, self.target_group.port)
            out.append(f"{host}:{port}")
        return tuple(out)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlbStandin:
        """The stand-in described by ALB_* / HC_* / DEREGISTRATION_DELAY variables.

        Listener ports inside the container are ALB_LISTEN_*_PORT; ALB_PUBLIC_HTTPS_PORT
        is what clients use (the replica publishes 8443). ALB_HTTPS_PORT/ALB_RUNTIME_PORT
        are the host-side published ports (compose, host CLI) and are NOT read here.
        """
        env = os.environ if env is None else env

        def get_list(key: str, default: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in env.get(key, default).split(",") if p.strip())

        def get_int(key: str, default: int) -> int:
            raw = env.get(key, "").strip()
            if not raw:
                return default
            if not raw.isdigit():
                raise AlbError(f"{key}={raw!r}: expected a whole number")
            return int(raw)

        group = TargetGroup(
            name=env.get("ALB_TARGET_GROUP", "jobtory-web"),
            port=get_int("ALB_TARGET_PORT", 80),
            health_check_path=env.get("HC_PATH", "/healthz"),
            interval_seconds=get_int("HC_INTERVAL", 10),
            timeout_seconds=get_int("HC_TIMEOUT", 5),
            healthy_threshold=get_int("HC_HEALTHY", 3),
            unhealthy_threshold=get_int("HC_UNHEALTHY", 2),
            matcher=env.get("HC_MATCHER", "200"),
            deregistration_delay_seconds=get_int("DEREGISTRATION_DELAY", 30),
        )
        return cls(
            hostnames=get_list("ALB_HOSTNAMES", "jobtory.localhost,www.jobtory.localhost"),
            targets=get_list("ALB_TARGETS", "web:80"),
            target_group=group,
            https_port=get_int("ALB_LISTEN_HTTPS_PORT", 443),
            http_port=get_int("ALB_LISTEN_HTTP_PORT", 80),
            public_https_port=get_int("ALB_PUBLIC_HTTPS_PORT", 443),
            cert_path=env.get("ALB_CERT_PATH", "/etc/alb/tls/site.pem"),
            runtime_port=get_int("ALB_LISTEN_RUNTIME_PORT", 9999),
            runtime_published_address=env.get("ALB_LISTEN_RUNTIME_ADDRESS", "").strip(),
            hsts_max_age=get_int("ALB_HSTS_MAX_AGE", 31536000),
            resolver=env.get("ALB_RESOLVER", "127.0.0.11:53"),
            run_as=env.get("ALB_RUN_AS", ""),
            server_state_file=env.get("ALB_SERVER_STATE_FILE", ""),
        )


def _one_address(text: str) -> bool:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return not address.is_unspecified


def spec_env(alb: AlbStandin) -> dict[str, str]:
    """The spec-derived settings as the entrypoint's variables (inverse of `from_env`).

    Container concerns (listener ports, TLS dir, user, resolver) are left to the image.
    """
    group = alb.target_group
    return {
        "ALB_HOSTNAMES": ",".join(alb.hostnames),
        "ALB_TARGETS": ",".join(alb.target_addresses),
        "ALB_TARGET_GROUP": group.name,
        "ALB_TARGET_PORT": str(group.port),
        "ALB_PUBLIC_HTTPS_PORT": str(alb.public_https_port),
        "ALB_HSTS_MAX_AGE": str(alb.hsts_max_age),
        "HC_PATH": group.health_check_path,
        "HC_INTERVAL": str(group.interval_seconds),
        "HC_TIMEOUT": str(group.timeout_seconds),
        "HC_HEALTHY": str(group.healthy_threshold),
        "HC_UNHEALTHY": str(group.unhealthy_threshold),
        "HC_MATCHER": group.matcher,
        "DEREGISTRATION_DELAY": str(group.deregistration_delay_seconds),
    }


def render_env_file(alb: AlbStandin) -> str:
    """`spec_env` as an env file (/generated/alb.env): sh-quoted, sourced by the entrypoint."""
    lines = ["# ALB stand-in settings, rendered from the spec. Do not edit."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in spec_env(alb).items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# haproxy.cfg: the one template (templates/haproxy.cfg.j2)
# ----------------------------------------------------------------------------------------


def render_haproxy_cfg(alb: AlbStandin) -> str:
    """The haproxy.cfg for `alb` (HAProxy >= 2.6)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # a HAProxy config, not HTML
    )
    group = alb.target_group
    return env.get_template("haproxy.cfg.j2").render(
        alb=alb,
        group=group,
        backend=BACKEND_PREFIX + group.name,
        port_suffix="" if alb.public_https_port == 443 else f":{alb.public_https_port}",
        failopen=FAILOPEN_SUFFIX,
    )


# ----------------------------------------------------------------------------------------
# TLS: a local CA (kept across restarts) and a leaf for the served hostnames
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsPaths:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    bundle: Path  # leaf certificate + key, the file HAProxy's `crt` loads


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = ${sans}
"""


def _openssl(*args: str) -> str:
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise AlbError("the openssl command is not installed") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AlbError(f"openssl {args[0]} failed: {last}")
    return done.stdout


def tls_sans(hostnames: Sequence[str]) -> list[str]:
    """subjectAltName entries: every served hostname, plus localhost and loopback IPs."""
    names = list(dict.fromkeys([*hostnames, "localhost"]))
    return [f"DNS:{n}" for n in names] + ["IP:127.0.0.1", "IP:::1"]


def _leaf_is_current(paths: TlsPaths, sans: list[str]) -> bool:
    if not all(p.exists() for p in (paths.cert, paths.key, paths.bundle)):
        return False
    sans_file = paths.cert.with_suffix(".sans")
    if not sans_file.exists() or sans_file.read_text().split() != sans:
        return False
    try:
        _openssl("verify", "-CAfile", str(paths.ca_cert), str(paths.cert))
        _openssl("x509", "-in", str(paths.cert), "-noout", "-checkend", str(30 * 86400))
    except AlbError:
        return False
    return True


def generate_tls(
    directory: str | Path, hostnames: Sequence[str], *, leaf_days: int = 397
) -> TlsPaths:
    """Create (or keep) the local CA and a leaf for `hostnames` in `directory`.

    Idempotent: an existing CA is always kept (so a browser's trust survives restarts);
    the leaf is re-issued only when missing, for other hostnames, from another CA, or
    within 30 days of expiry. Private keys (and the bundle holding one) are 0600.
    """
    if not hostnames:
        raise AlbError("generate_tls: at least one hostname is required")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = TlsPaths(
        ca_cert=root / "ca.crt",
        ca_key=root / "ca.key",
        cert=root / "site.crt",
        key=root / "site.key",
        bundle=root / "site.pem",
    )
    sans = tls_sans(hostnames)
    old_umask = os.umask(0o077)
    try:
        with tempfile.TemporaryDirectory(prefix="alb-tls-") as tmp:
            cnf = Path(tmp) / "openssl.cnf"
            cnf.write_text(_OPENSSL_CNF.replace("${sans}", ",".join(sans)))
            if paths.ca_cert.exists() != paths.ca_key.exists():
                raise AlbError(
                    f"{root}: found only one of ca.crt/ca.key; restore the other or delete "
                    "both to create a new CA (browsers must then trust it again)"
                )
            if not paths.ca_cert.exists():
                ca_id = secrets.token_hex(4)
                _openssl(
                    "req", "-x509", "-new", "-config", str(cnf), "-extensions", "v3_ca",
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", f"/O=jobtory local replica/CN=jobtory local CA {ca_id}",
                    "-days", "3650", "-keyout", str(paths.ca_key), "-out", str(paths.ca_cert),
                )  # fmt: skip
            if not _leaf_is_current(paths, sans):
                csr = Path(tmp) / "site.csr"
                key = Path(tmp) / "site.key"
                cert = Path(tmp) / "site.crt"
                _openssl(
                    "req", "-new", "-config", str(cnf),
                    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", f"/CN={hostnames[0]}", "-keyout", str(key), "-out", str(csr),
                )  # fmt: skip
                _openssl(
                    "x509", "-req", "-in", str(csr), "-CA", str(paths.ca_cert),
                    "-CAkey", str(paths.ca_key), "-set_serial", "0x" + secrets.token_hex(16),
                    "-days", str(leaf_days), "-extfile", str(cnf), "-extensions", "v3_leaf",
                    "-out", str(cert),
                )  # fmt: skip
                bundle = Path(tmp) / "site.pem"
                bundle.write_text(cert.read_text() + key.read_text())
                sans_tmp = Path(tmp) / "site.sans"
                sans_tmp.write_text("\n".join(sans) + "\n")
                # Same filesystem is not guaranteed (tmp vs volume): write, then rename.
                for src, dst in (
                    (key, paths.key),
                    (cert, paths.cert),
                    (bundle, paths.bundle),
                    (sans_tmp, paths.cert.with_suffix(".sans")),
                ):
                    part = dst.with_name(dst.name + ".new")
                    part.write_bytes(src.read_bytes())
                    part.replace(dst)
    finally:
        os.umask(old_umask)
    for public in (paths.ca_cert, paths.cert, paths.cert.with_suffix(".sans")):
        public.chmod(0o644)
    for private in (paths.ca_key, paths.key, paths.bundle):
        private.chmod(0o600)
    return paths


def ca_fingerprint(ca_cert: Path) -> str:
    out = _openssl("x509", "-in", str(ca_cert), "-noout", "-fingerprint", "-sha256")
    return out.strip().split("=", 1)[-1]


def ca_instructions(ca_cert: Path) -> str:
    """How to trust the local CA on common systems (the CA file itself never leaves the volume
    unless you copy it out as shown)."""
    if not ca_cert.exists():
        raise AlbError(f"{ca_cert} does not exist yet: start the alb service first")
    fingerprint = ca_fingerprint(ca_cert)
    return f"""\
The ALB stand-in serves a certificate from a CA generated on first start:
  {ca_cert}   (SHA-256 {fingerprint})

1. Copy it out of the container:
     docker compose -f compose/compose.yaml exec -T alb print-ca-instructions --pem > jobtory-local-ca.crt

2. Trust it (only on machines you use for development):
   Debian/Ubuntu: sudo cp jobtory-local-ca.crt /usr/local/share/ca-certificates/ && sudo update-ca-certificates
   Fedora/RHEL:   sudo cp jobtory-local-ca.crt /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust
   macOS:         sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain jobtory-local-ca.crt
   Windows:       certutil -addstore -f ROOT jobtory-local-ca.crt   (admin prompt)
   Firefox:       Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import
   One command:   curl --cacert jobtory-local-ca.crt https://<hostname>:<public https port>/
   Python:        SSL_CERT_FILE=jobtory-local-ca.crt (httpx: verify="jobtory-local-ca.crt")

3. To stop trusting it, remove the same file again (update-ca-certificates --fresh, or
   delete "jobtory local CA" from the keychain/store). Deleting the alb TLS volume makes a
   new CA on the next start, which must then be trusted again.
"""  # noqa: E501


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def _runtime(args: argparse.Namespace) -> AlbRuntime:
    return AlbRuntime(host=args.host, port=args.port, timeout=args.timeout)


def _print_state(state: TargetState) -> None:
    print(
        f"{state.name:<24} {state.health:<10} sessions={state.sessions:<4} "
        f"status={state.status} address={state.address or '-'} check={state.check or '-'}"
    )


def _cmd_render(args: argparse.Namespace) -> int:
    text = render_haproxy_cfg(AlbStandin.from_env())
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_tls(args: argparse.Namespace) -> int:
    hostnames = [h.strip() for h in (args.hostnames or "").split(",") if h.strip()]
    paths = generate_tls(args.dir, hostnames or AlbStandin.from_env().hostnames)
    print(f"CA {paths.ca_cert} (SHA-256 {ca_fingerprint(paths.ca_cert)}); leaf {paths.bundle}")
    return 0


def _cmd_ca(args: argparse.Namespace) -> int:
    ca = Path(args.ca) if args.ca else Path(args.dir) / "ca.crt"
    if args.pem:
        if not ca.exists():
            raise AlbError(f"{ca} does not exist yet: start the alb service first")
        sys.stdout.write(ca.read_text())
    else:
        sys.stdout.write(ca_instructions(ca))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    states = _runtime(args).targets()
    for state in states:
        _print_state(state)
    return 0 if any(s.health == "healthy" for s in states) else 1


def _cmd_deregister(args: argparse.Namespace) -> int:
    _print_state(_runtime(args).deregister(args.target, wait=not args.no_wait, delay=args.delay))
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    _print_state(_runtime(args).register(args.target, wait=args.wait, timeout=args.wait_timeout))
    return 0


def _cmd_save_state(args: argparse.Namespace) -> int:
    _runtime(args).save_state(args.file)
    return 0


def _with_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("ALB_RUNTIME_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ALB_RUNTIME_PORT", "9999")))
    parser.add_argument("--timeout", type=float, default=5.0, help="socket timeout (s)")


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the stand-in's commands to an argparse subparsers object.

    Each command sets `handler(args) -> int` (the exit code); raises AlbError on failure.
    """
    p = subparsers.add_parser("render", help="print haproxy.cfg from ALB_*/HC_* variables")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(handler=_cmd_render)

    p = subparsers.add_parser("tls", help="create the local CA (once) and the leaf certificate")
    p.add_argument("--dir", default="/etc/alb/tls")
    p.add_argument("--hostnames", help="comma list (default: ALB_HOSTNAMES)")
    p.set_defaults(handler=_cmd_tls)

    p = subparsers.add_parser("ca-instructions", help="how to trust the local CA")
    p.add_argument("--dir", default="/etc/alb/tls")
    p.add_argument("--ca", help="path of ca.crt (default: DIR/ca.crt)")
    p.add_argument("--pem", action="store_true", help="print only the CA certificate")
    p.set_defaults(handler=_cmd_ca)

    p = subparsers.add_parser("status", help="targets and their health (exit 1: none healthy)")
    _with_runtime_options(p)
    p.set_defaults(handler=_cmd_status)

    p = subparsers.add_parser("deregister", help="drain a target, then take it out")
    p.add_argument("target", help="host:port (or host)")
    p.add_argument("--no-wait", action="store_true", help="only start draining")
    p.add_argument("--delay", type=float, help="override the deregistration delay (s)")
    _with_runtime_options(p)
    p.set_defaults(handler=_cmd_deregister)

    p = subparsers.add_parser("save-state", help="save targets' state before a reload")
    p.add_argument("--file", required=True, help="the config's server-state-file")
    _with_runtime_options(p)
    p.set_defaults(handler=_cmd_save_state)

    p = subparsers.add_parser("register", help="put a target back (healthy after the threshold)")
    p.add_argument("target", help="host:port (or host)")
    p.add_argument("--wait", action="store_true", help="wait until it is healthy")
    p.add_argument("--wait-timeout", type=float, default=120.0)
    _with_runtime_options(p)
    p.set_defaults(handler=_cmd_register)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alb_standin", description="The ALB stand-in.")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.handler
    try:
        return func(args)
    except AlbError as exc:
        print(f"alb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
