"""Rendering, validation and TLS generation of the ALB stand-in (no HAProxy process)."""

from __future__ import annotations

import ast
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobtory_stack.render.alb_env import alb_env
from jobtory_stack.spec.loader import load_stack
from replica.alb_standin import (
    AlbError,
    AlbRuntime,
    AlbStandin,
    TargetGroup,
    ca_instructions,
    generate_tls,
    main,
    render_env_file,
    render_haproxy_cfg,
    spec_env,
)
from tests.conftest import free_port
from tests.helpers import ROOT, require


def _alb(**group: object) -> AlbStandin:
    return AlbStandin(
        hostnames=("jobtory.localhost", "www.jobtory.localhost"),
        targets=("ec2-1:80", "ec2-2"),
        target_group=TargetGroup(name="jobtory-web", **group),  # type: ignore[arg-type]
        public_https_port=8443,
    )


def test_render_models_the_target_group() -> None:
    cfg = render_haproxy_cfg(
        _alb(interval_seconds=7, timeout_seconds=3, healthy_threshold=4, matcher="200-299,301")
    )
    assert "http-check send meth GET uri /healthz ver HTTP/1.1" in cfg
    assert "http-check expect status 200-299,301" in cfg
    assert "default-server inter 7s fall 2 rise 4 init-addr last,libc,none resolvers docker" in cfg
    assert "resolve-opts allow-dup-ip" in cfg
    assert "timeout check 3s" in cfg
    assert "set-var proc.deregistration_delay int(30)" in cfg
    # A target without a port gets the target group's port; each has a fail-open twin.
    assert "    server ec2-1:80 ec2-1:80 check\n" in cfg
    assert "    server ec2-2:80 ec2-2:80 check\n" in cfg
    assert "    server ec2-2:80-failopen ec2-2:80 backup\n" in cfg
    assert "stats socket ipv4@127.0.0.1:9999 level admin" in cfg
    assert "nameserver dns 127.0.0.11:53" in cfg
    assert ":8443%[pathq] code 301" in cfg
    assert "X-Forwarded-Port 8443" in cfg
    assert 'Strict-Transport-Security "max-age=31536000"' in cfg


def _stats_sockets(cfg: str) -> list[str]:
    return [line.split()[2] for line in cfg.splitlines() if line.strip().startswith("stats socket")]


def _compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose" / name).read_text())
    return loaded


def test_the_runtime_api_is_off_the_app_network() -> None:
    """The runtime API drains targets and has no authentication: it listens on loopback
    and on the alb's own edge address (where the published 127.0.0.1 port arrives), never
    on an interface of the "VPC" the app, Caddy and the EC2 hosts share."""
    alb = AlbStandin.from_env({"ALB_LISTEN_RUNTIME_ADDRESS": "172.30.1.10"})
    assert _stats_sockets(render_haproxy_cfg(alb)) == [
        "ipv4@127.0.0.1:9999",
        "ipv4@172.30.1.10:9999",
    ]
    assert _stats_sockets(render_haproxy_cfg(AlbStandin.from_env({}))) == ["ipv4@127.0.0.1:9999"]
    for bad in ("0.0.0.0", "alb", "172.30.1.0/24"):
        with pytest.raises(AlbError, match="never on every interface"):
            AlbStandin.from_env({"ALB_LISTEN_RUNTIME_ADDRESS": bad})

    base, fleet = _compose("compose.yaml"), _compose("fleet.yaml")
    services = {**base["services"], **fleet["services"]}
    runtime = {
        "alb": str(services["alb"]["environment"]["ALB_LISTEN_RUNTIME_ADDRESS"]),
        "alb-fleet": re.findall(
            r"ALB_LISTEN_RUNTIME_ADDRESS=(\S+)", services["alb-fleet"]["command"][0]
        )[0],
    }
    for name, address in runtime.items():
        service = services[name]
        # its address on the edge network, where the published ports arrive...
        assert service["networks"]["edge"]["ipv4_address"] == address
        assert service["networks"]["edge"]["priority"] > service["networks"]["default"]["priority"]
        assert [p for p in service["ports"] if p.endswith(":9999")] == [
            p for p in service["ports"] if p.startswith("127.0.0.1:") and p.endswith(":9999")
        ]
    # ...a network no service but the load balancers joins
    on_edge = {n for n, s in services.items() if "edge" in (s.get("networks") or {})}
    assert on_edge == set(runtime)


def test_render_without_hsts_or_port_suffix() -> None:
    alb = AlbStandin(
        hostnames=("jobtory.localhost",),
        targets=("web:80",),
        target_group=TargetGroup(name="tg"),
        hsts_max_age=0,
        resolver="",
    )
    cfg = render_haproxy_cfg(alb)
    assert "Strict-Transport-Security" not in cfg
    assert "https://jobtory.localhost%[pathq] code 301" in cfg
    assert "resolvers" not in cfg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matcher": "200-"}, "matcher"),
        ({"matcher": "299-200"}, "ascending"),
        ({"matcher": "500"}, "200-499"),
        ({"timeout_seconds": 11}, "timeout"),
        ({"healthy_threshold": 0}, "healthy_threshold"),
        ({"health_check_path": "healthz"}, "must start with '/'"),
        ({"health_check_path": "/health z"}, "no spaces"),
        ({"health_check_path": "/healthz#x"}, "URL characters"),
        ({"deregistration_delay_seconds": 4000}, "deregistration delay"),
    ],
)
def test_target_group_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AlbError, match=message):
        TargetGroup(name="tg", **kwargs)  # type: ignore[arg-type]


def test_standin_validation() -> None:
    group = TargetGroup(name="tg")
    with pytest.raises(AlbError, match="host:port"):
        AlbStandin(hostnames=("a.localhost",), targets=("web:http",), target_group=group)
    with pytest.raises(AlbError, match="duplicates"):
        AlbStandin(hostnames=("a.localhost",), targets=("web", "web:80"), target_group=group)
    with pytest.raises(AlbError, match="at least one"):
        AlbStandin(hostnames=(), targets=("web",), target_group=group)


def test_from_env_reads_every_setting() -> None:
    alb = AlbStandin.from_env(
        {
            "ALB_HOSTNAMES": "jobtory.localhost, www.jobtory.localhost",
            "ALB_TARGETS": "ec2-1:80,ec2-2:80",
            "ALB_PUBLIC_HTTPS_PORT": "8443",
            "HC_PATH": "/readyz",
            "HC_INTERVAL": "5",
            "HC_TIMEOUT": "2",
            "HC_HEALTHY": "2",
            "HC_UNHEALTHY": "3",
            "HC_MATCHER": "200-299",
            "DEREGISTRATION_DELAY": "15",
        }
    )
    assert alb.hostnames == ("jobtory.localhost", "www.jobtory.localhost")
    assert alb.targets == ("ec2-1:80", "ec2-2:80")
    assert alb.public_https_port == 8443
    assert alb.target_group == TargetGroup(
        name="jobtory-web",
        health_check_path="/readyz",
        interval_seconds=5,
        timeout_seconds=2,
        healthy_threshold=2,
        unhealthy_threshold=3,
        matcher="200-299",
        deregistration_delay_seconds=15,
    )
    # Host-side published ports (compose) never move the listeners inside the container.
    moved = AlbStandin.from_env({"ALB_HTTPS_PORT": "8443", "ALB_RUNTIME_PORT": "19999"})
    assert (moved.https_port, moved.runtime_port) == (443, 9999)
    inside = AlbStandin.from_env({"ALB_LISTEN_HTTPS_PORT": "8444", "ALB_LISTEN_HTTP_PORT": "81"})
    assert (inside.https_port, inside.http_port) == (8444, 81)
    with pytest.raises(AlbError, match="HC_INTERVAL"):
        AlbStandin.from_env({"HC_INTERVAL": "ten"})
    assert AlbStandin.from_env({}).targets == ("web:80",)


def test_rendered_config_is_valid_haproxy(
    tmp_path: Path, haproxy: Callable[[str], list[str]]
) -> None:
    tls = generate_tls(tmp_path / "tls", ["jobtory.localhost"])
    alb = AlbStandin(
        hostnames=("jobtory.localhost",),
        # Targets that do not resolve (yet) must not stop HAProxy from starting.
        targets=("web:80", "ec2-1.invalid:80"),
        target_group=TargetGroup(name="jobtory-web", matcher="200-299"),
        cert_path=str(tls.bundle),
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(alb))
    check = [*haproxy(f"jobtory-test-haproxy-check-{tmp_path.name}"), "-c", "-f", str(cfg)]
    done = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_generate_tls_is_idempotent_and_private(tmp_path: Path) -> None:
    require(shutil.which("openssl") is not None, "openssl is not installed")
    first = generate_tls(tmp_path, ["jobtory.localhost", "www.jobtory.localhost"])
    for key in (first.ca_key, first.key, first.bundle):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    text = _openssl("x509", "-in", str(first.cert), "-noout", "-text")
    for san in ("DNS:jobtory.localhost", "DNS:www.jobtory.localhost", "DNS:localhost"):
        assert san in text
    assert "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text
    assert "CA:TRUE" in _openssl("x509", "-in", str(first.ca_cert), "-noout", "-text")
    _openssl("verify", "-CAfile", str(first.ca_cert), str(first.cert))

    ca_before, leaf_before = first.ca_cert.read_bytes(), first.cert.read_bytes()
    again = generate_tls(tmp_path, ["jobtory.localhost", "www.jobtory.localhost"])
    assert again == first
    assert first.ca_cert.read_bytes() == ca_before
    assert first.cert.read_bytes() == leaf_before

    # Another hostname: a new leaf from the SAME CA (a trusted CA stays trusted).
    generate_tls(tmp_path, ["jobtory.localhost", "api.jobtory.localhost"])
    assert first.ca_cert.read_bytes() == ca_before
    assert first.cert.read_bytes() != leaf_before
    leaf_text = _openssl("x509", "-in", str(first.cert), "-noout", "-text")
    assert "DNS:api.jobtory.localhost" in leaf_text
    _openssl("verify", "-CAfile", str(first.ca_cert), str(first.cert))

    first.ca_key.unlink()
    with pytest.raises(AlbError, match=r"only one of ca\.crt/ca\.key"):
        generate_tls(tmp_path, ["jobtory.localhost"])


def test_ca_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require(shutil.which("openssl") is not None, "openssl is not installed")
    with pytest.raises(AlbError, match="does not exist yet"):
        ca_instructions(tmp_path / "ca.crt")
    paths = generate_tls(tmp_path, ["jobtory.localhost"])
    text = ca_instructions(paths.ca_cert)
    assert "update-ca-certificates" in text and "SHA-256" in text
    assert main(["ca-instructions", "--dir", str(tmp_path), "--pem"]) == 0
    assert capsys.readouterr().out == paths.ca_cert.read_text()


def test_runtime_errors_clearly_when_socket_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens here
    runtime = AlbRuntime(port=port, timeout=1.0)
    with pytest.raises(AlbError, match=rf"127\.0\.0\.1:{port} is unreachable") as err:
        runtime.targets()
    assert "\n" not in str(err.value)
    assert main(["status", "--port", str(port)]) == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("alb: ALB runtime API at") and err_text.count("\n") == 1


@pytest.mark.parametrize("host", ["8.8.8.8", "example.com", "alb.example.org"])
def test_runtime_refuses_non_local_hosts(host: str) -> None:
    with pytest.raises(AlbError, match="only loopback or compose-network"):
        AlbRuntime(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "alb", "172.18.0.4", "::1"])
def test_runtime_accepts_local_hosts(host: str) -> None:
    AlbRuntime(host=host)


def alb_image_files() -> list[str]:
    """The project files the alb image gets: the sources of its Dockerfile's COPY lines
    (a directory stands for every file in it)."""
    dockerfile = (ROOT / "compose" / "alb" / "Dockerfile").read_text()
    files: list[str] = []
    for line in dockerfile.splitlines():
        if not line.startswith("COPY "):
            continue
        for source in line.split()[1:-1]:
            path = ROOT / source
            if path.is_dir():
                files += [p.relative_to(ROOT).as_posix() for p in path.rglob("*") if p.is_file()]
            else:
                files.append(source)
    assert files, "compose/alb/Dockerfile copies nothing"
    return files


def imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module)
    return modules


def module_file(module: str) -> str:
    path = module.replace(".", "/")
    return f"{path}.py" if (ROOT / f"{path}.py").exists() else f"{path}/__init__.py"


def test_module_imports_only_what_the_image_has() -> None:
    """The alb image runs the stand-in with Debian's python3 and python3-jinja2, and holds
    only the files its Dockerfile copies: whatever the stand-in imports, directly
    or through those files, is the standard library, jinja2 or one of those files."""
    files = alb_image_files()
    assert "replica/templates/haproxy.cfg.j2" in files
    # the image runs `python3 -m replica.alb_standin`: the package, then the module
    todo, seen = ["replica/__init__.py", "replica/alb_standin.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        assert path in files, f"the stand-in needs {path}; the alb image lacks it"
        for module in imported_modules(ROOT / path):
            parts = module.split(".")
            if parts[0] in ("replica", "jobtory_stack"):  # the module and its packages
                todo += [module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
            else:
                assert parts[0] in sys.stdlib_module_names or parts[0] == "jinja2", module
    assert seen == {f for f in files if f.endswith(".py")}  # and nothing it does not need


def test_image_entrypoint_and_dockerfile() -> None:
    entrypoint = ROOT / "compose" / "alb" / "entrypoint"
    assert subprocess.run(["sh", "-n", str(entrypoint)]).returncode == 0
    assert entrypoint.stat().st_mode & stat.S_IXUSR
    dockerfile = (ROOT / "compose" / "alb" / "Dockerfile").read_text()
    copy = "COPY replica/__init__.py replica/alb_standin.py /usr/local/lib/alb/replica/"
    assert copy in dockerfile
    assert "python3-jinja2" in dockerfile
    assert 'ENTRYPOINT ["alb-entrypoint"]' in dockerfile
    assert "exec haproxy -W -db" in entrypoint.read_text()


def test_env_file_round_trips_through_the_entrypoint(tmp_path: Path) -> None:
    alb = AlbStandin(
        hostnames=("jobtory.localhost", "www.jobtory.localhost"),
        targets=("ec2-1:80", "ec2-2"),
        target_group=TargetGroup(
            name="jobtory-web", health_check_path="/healthz?full=1&x=y", interval_seconds=5,
            timeout_seconds=2, healthy_threshold=2, matcher="200-299",
            deregistration_delay_seconds=9,
        ),
        public_https_port=8443,
        hsts_max_age=600,
    )  # fmt: skip
    assert AlbStandin.from_env(spec_env(alb)) == alb.__class__(
        **{**alb.__dict__, "targets": ("ec2-1:80", "ec2-2:80")}
    )
    # Sourced the way the entrypoint does (`set -a; . file`): the same values come back.
    env_file = tmp_path / "alb.env"
    env_file.write_text(render_env_file(alb))
    script = f'set -a; . "{env_file}"; set +a; env'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for key, value in spec_env(alb).items():
        assert seen[key] == value, key


def test_the_spec_side_env_is_what_the_stand_in_reads() -> None:
    """`deploy.py render alb-env` (the product) writes the variables the stand-in reads."""
    values = alb_env(load_stack(ROOT / "stack.toml").env("local"))
    assert spec_env(AlbStandin.from_env(values)) == values
