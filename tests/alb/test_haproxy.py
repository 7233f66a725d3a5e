"""The ALB stand-in against a real HAProxy process and two Python targets, all on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from replica.alb_standin import TargetGroup, main
from tests.alb.conftest import HOSTNAMES, RunningAlb, health_is, wait_for

pytestmark = pytest.mark.timeout(60)

StartAlb = Callable[..., RunningAlb]


def test_http_redirects_301_to_the_public_https_port(start_alb: StartAlb) -> None:
    alb = start_alb(n_targets=1, public_https_port=8443)
    url = f"http://127.0.0.1:{alb.config.http_port}/problems/7?page=2&q=a%20b"
    resp = httpx.get(url, headers={"Host": "www.jobtory.localhost:8080"})
    assert resp.status_code == 301
    assert (
        resp.headers["location"] == "https://www.jobtory.localhost:8443/problems/7?page=2&q=a%20b"
    )
    # HTTP/1.0 without Host: the first served hostname.
    with socket.create_connection(("127.0.0.1", alb.config.http_port), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 301")
    assert "location: https://jobtory.localhost:8443/x\r\n" in head.lower()
    assert alb.targets[0].served() == 0


def test_https_with_the_generated_ca_and_hsts(start_alb: StartAlb) -> None:
    alb = start_alb(n_targets=1)
    resp = alb.client().get(f"{alb.https_url}/", headers={"Host": HOSTNAMES[0]})
    assert resp.status_code == 200
    assert resp.headers["strict-transport-security"] == "max-age=31536000"
    # The leaf verifies for the served names (SNI + hostname check) against the CA.
    for name in HOSTNAMES:
        raw = socket.create_connection(("127.0.0.1", alb.config.https_port), timeout=5)
        with alb.ssl_context().wrap_socket(raw, server_hostname=name) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # Without the CA, verification fails: the certificate is not from a public CA.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{alb.https_url}/", timeout=5)


def test_forwarded_headers_like_an_alb(start_alb: StartAlb) -> None:
    alb = start_alb(n_targets=1, public_https_port=8443)
    client = alb.client()
    seen = client.get(f"{alb.https_url}/a", headers={"Host": HOSTNAMES[0]}).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == "8443"
    assert seen["host"] == HOSTNAMES[0]
    seen = client.get(
        f"{alb.https_url}/b",
        headers={
            "Host": HOSTNAMES[0],
            "X-Forwarded-For": "203.0.113.7, 198.51.100.2",
            "X-Forwarded-Proto": "http",
        },
    ).json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.7, 198.51.100.2, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"


def test_health_checks_use_the_path_host_and_user_agent(start_alb: StartAlb) -> None:
    alb = start_alb(n_targets=1)
    target = alb.targets[0]
    wait_for(lambda: target.checks_since(0, 200) >= 1, 5, "a health check")
    # The Host of a check is the target's address, not a served hostname (§9 pitfall).
    assert target.health_headers["host"] == target.address
    assert target.health_headers["user-agent"] == "ELB-HealthChecker/2.0"
    assert target.served() == 0  # checks are not traffic
    state = alb.runtime.target(target.address)
    assert state.health == "healthy" and state.address == target.address


def test_unhealthy_after_threshold_then_recovers(start_alb: StartAlb) -> None:
    alb = start_alb()  # interval 1 s, unhealthy 2, healthy 2
    t1, t2 = alb.targets
    since = time.monotonic()
    t2.health_status = 500
    wait_for(lambda: alb.runtime.target(t2.address).health == "unhealthy", 10, "t2 unhealthy")
    failed = t2.checks_since(since, 500)
    assert 2 <= failed <= 3, f"marked unhealthy after {failed} failed checks"
    assert alb.hit(10) == {"t1": 10}
    assert alb.runtime.target(t1.address).health == "healthy"

    since = time.monotonic()
    t2.health_status = 200
    wait_for(lambda: alb.runtime.target(t2.address).health == "healthy", 10, "t2 healthy")
    passed = t2.checks_since(since, 200)
    assert 2 <= passed <= 3, f"healthy again after {passed} passing checks"
    assert alb.hit(10) == {"t1": 5, "t2": 5}


def test_matcher_range(start_alb: StartAlb) -> None:
    group = TargetGroup(
        name="tg", interval_seconds=1, timeout_seconds=1, healthy_threshold=2,
        unhealthy_threshold=2, matcher="200-299",
    )  # fmt: skip
    alb = start_alb(group=group, n_targets=1)
    target = alb.targets[0]
    since = time.monotonic()
    target.health_status = 204
    wait_for(lambda: target.checks_since(since, 204) >= 3, 10, "three 204 checks")
    assert alb.runtime.target(target.address).health == "healthy"
    target.health_status = 302
    wait_for(lambda: alb.runtime.target(target.address).health == "unhealthy", 10, "302 fails")


def test_fails_open_when_every_target_is_unhealthy(start_alb: StartAlb) -> None:
    alb = start_alb()
    for target in alb.targets:
        target.health_status = 503
    for target in alb.targets:
        wait_for(health_is(alb, target.address, "unhealthy"), 10, "down")
    # Like an ALB: with no healthy target, requests go to all of them rather than failing.
    assert alb.hit(10) == {"t1": 5, "t2": 5}
    # One recovers: traffic goes only to it again.
    alb.targets[0].health_status = 200
    wait_for(lambda: alb.runtime.target(alb.targets[0].address).health == "healthy", 10, "up")
    assert alb.hit(6) == {"t1": 6}


def _slow_request(alb: RunningAlb, seconds: float, out: dict[str, object]) -> threading.Thread:
    def run() -> None:
        start = time.monotonic()
        try:
            with httpx.Client(verify=alb.ssl_context(), timeout=30) as client:
                resp = client.get(f"{alb.https_url}/slow?s={seconds}", headers={"Host": "x"})
            out["status"] = resp.status_code
            if resp.status_code == 200:
                out["target"] = resp.json()["target"]
        except httpx.HTTPError as exc:
            out["error"] = repr(exc)
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _busy_target(alb: RunningAlb) -> str:
    wait_for(lambda: any(t.in_flight for t in alb.targets), 5, "the slow request to arrive")
    return next(t for t in alb.targets if t.in_flight).name


def test_deregister_drains_in_flight_and_register_needs_threshold(start_alb: StartAlb) -> None:
    alb = start_alb()  # deregistration delay 5 s
    out: dict[str, object] = {}
    thread = _slow_request(alb, 2.0, out)
    busy = alb.target_named(_busy_target(alb))
    other = next(t for t in alb.targets if t is not busy)

    result: dict[str, object] = {}
    drain = threading.Thread(
        target=lambda: result.update(state=alb.runtime.deregister(busy.address)), daemon=True
    )
    start = time.monotonic()
    drain.start()
    wait_for(lambda: alb.runtime.target(busy.address).health == "draining", 5, "draining")
    assert alb.runtime.target(busy.address).sessions == 1
    # No new requests for the draining target; the in-flight one finishes.
    assert alb.hit(6) == {other.name: 6}
    thread.join(10)
    drain.join(10)
    took = time.monotonic() - start
    assert out.get("status") == 200 and out.get("target") == busy.name, out
    assert 0.5 < took < 4.5, f"deregister returned after {took:.1f}s, not when sessions ended"
    state = alb.runtime.target(busy.address)
    assert state.health == "unused" and state.sessions == 0
    assert alb.hit(4) == {other.name: 4}

    # Register again: unhealthy until healthy_threshold checks pass (an ALB's `initial`).
    since = time.monotonic()
    assert alb.runtime.register(busy.address).health == "unhealthy"
    assert alb.hit(4) == {other.name: 4}
    alb.runtime.wait_healthy(busy.address, timeout=10)
    assert busy.checks_since(since, 200) >= 2
    assert alb.hit(6) == {"t1": 3, "t2": 3}


def test_deregistration_delay_is_honoured(start_alb: StartAlb) -> None:
    group = TargetGroup(
        name="tg", interval_seconds=1, timeout_seconds=1, healthy_threshold=2,
        unhealthy_threshold=2, deregistration_delay_seconds=2,
    )  # fmt: skip
    alb = start_alb(group=group)
    assert alb.runtime.deregistration_delay() == 2
    out: dict[str, object] = {}
    thread = _slow_request(alb, 8.0, out)
    busy = alb.target_named(_busy_target(alb))
    start = time.monotonic()
    state = alb.runtime.deregister(busy.address)
    took = time.monotonic() - start
    assert 1.8 <= took < 4, f"deregister took {took:.1f}s with a 2 s delay"
    assert state.health == "unused"
    # After the delay the ALB closes what is still open: the 8 s request does not finish.
    thread.join(10)
    assert out.get("status") != 200 and float(str(out["seconds"])) < 6, out
    wait_for(lambda: alb.runtime.target(busy.address).sessions == 0, 5, "sessions closed")


def test_deregister_without_wait_and_a_second_call_finishes(start_alb: StartAlb) -> None:
    alb = start_alb()
    t1 = alb.targets[0]
    assert alb.runtime.deregister("127.0.0.1:" + t1.address.split(":")[1], wait=False).health == (
        "draining"
    )
    assert alb.runtime.deregister(t1.address).health == "unused"  # no sessions: immediate
    assert alb.runtime.deregister(t1.address).health == "unused"  # idempotent
    assert alb.hit(4) == {"t2": 4}


def test_unresolvable_target_does_not_stop_haproxy(start_alb: StartAlb) -> None:
    alb = start_alb(n_targets=1, extra_targets=("ec2-9.invalid:80",))
    states = {s.name: s for s in alb.runtime.targets()}
    assert states["ec2-9.invalid:80"].health == "unhealthy"
    assert states["ec2-9.invalid:80"].status.startswith("MAINT")
    assert alb.hit(3) == {"t1": 3}


def test_cli_status_register_deregister(
    start_alb: StartAlb, capsys: pytest.CaptureFixture[str]
) -> None:
    alb = start_alb()
    port = ["--port", str(alb.config.runtime_port)]
    t1 = alb.targets[0]
    assert main(["status", *port]) == 0
    out = capsys.readouterr().out
    assert out.count("healthy") == 2 and t1.address in out
    assert main(["deregister", t1.address, "--delay", "1", *port]) == 0
    assert "unused" in capsys.readouterr().out
    assert main(["register", t1.address, "--wait", "--wait-timeout", "10", *port]) == 0
    assert "healthy" in capsys.readouterr().out
    assert main(["deregister", "nope:80", *port]) == 2
    assert "no single target 'nope:80'" in capsys.readouterr().err


def test_reload_keeps_deregistered_targets_out(start_alb: StartAlb) -> None:
    alb = start_alb()
    t1, t2 = alb.targets
    alb.runtime.deregister(t1.address, delay=0)
    worker_pid = alb.runtime.command("show info").split("Pid: ", 1)[1].split()[0]
    alb.runtime.save_state(alb.config.server_state_file)
    alb.proc.send_signal(signal.SIGUSR2)  # master-worker reload, as `alb-reload` does

    def reloaded() -> bool:
        try:
            info = alb.runtime.command("show info")
        except Exception:
            return False
        return info.split("Pid: ", 1)[1].split()[0] != worker_pid

    wait_for(reloaded, 10, "the reloaded worker")
    assert alb.runtime.target(t1.address).health == "unused"
    assert alb.runtime.target(t2.address).health == "healthy"
    assert alb.hit(4) == {"t2": 4}


def test_idle_keep_alive_connections_do_not_hold_a_drain(start_alb: StartAlb) -> None:
    alb = start_alb()  # deregistration delay 5 s
    client = alb.client()  # keep-alive: its connections stay open through the drain
    served = {
        client.get(f"{alb.https_url}/k", headers={"Host": "x"}).json()["target"] for _ in "ab"
    }
    assert served == {"t1", "t2"}
    start = time.monotonic()
    assert alb.runtime.deregister(alb.targets[0].address).health == "unused"
    assert time.monotonic() - start < 2, "an idle keep-alive connection is not in flight"
    names = {
        client.get(f"{alb.https_url}/k", headers={"Host": "x"}).json()["target"] for _ in "abcd"
    }
    assert names == {"t2"}
