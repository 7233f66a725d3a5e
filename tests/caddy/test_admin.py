"""The admin-API helper against a real Caddy: load, ETag patches, refusals, upstreams."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jobtory_stack.caddy.admin import CaddyAdmin, parse_admin_address
from jobtory_stack.cli import main
from jobtory_stack.errors import CaddyConflict, CaddyError
from jobtory_stack.render.caddyfile import APP_PROXY_ID, CaddySite, render_caddyfile
from tests.caddy.conftest import INDEX_HTML, CaddyProc, EchoUpstream, caddy_binary, client
from tests.conftest import free_port
from tests.helpers import require

pytestmark = pytest.mark.caddy


def test_alb_mode_serves_api_health_and_static(caddy: CaddyProc, alb_site: CaddySite) -> None:
    with client() as http:
        for path in (
            "/api/problems",
            "/auth/google/login",
            "/admin/",
            "/static/x.css",
            "/healthz",
            "/readyz",
        ):
            r = http.get(f"{caddy.http}{path}")
            assert r.status_code == 200, (path, r.text)
            assert r.json()["path"] == path
        # The ALB's health checks use the target's private IP as Host: still passed through.
        r = http.get(f"{caddy.http}/healthz", headers={"Host": "10.0.1.23"})
        assert r.status_code == 200 and r.json()["headers"]["Host"] == "10.0.1.23"
        # Front end: files, and the SPA fallback to index.html.
        assert http.get(f"{caddy.http}/assets/app.js").text.startswith("console.log")
        assert http.get(f"{caddy.http}/").text == INDEX_HTML
        assert http.get(f"{caddy.http}/problems/42").text == INDEX_HTML


def test_load_identical_config_is_a_noop(caddy: CaddyProc, alb_site: CaddySite) -> None:
    config = caddy.admin.config()
    assert caddy.admin.load(config) is False
    assert caddy.admin.switch_mode(alb_site) is False
    assert caddy.admin.config(f"/id/{APP_PROXY_ID}/handler") == "reverse_proxy"


def test_get_returns_value_and_etag_and_stale_etag_is_refused(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    admin = caddy.admin
    path = "apps/http/servers/srv0/listen"
    value, etag = admin.get(path)
    assert value == [alb_site.http_bind]  # the passed-in socket (socket activation)
    assert etag.startswith('"/config/apps/http/servers/srv0/listen ')
    admin.put("apps/http/servers/srv0/logs", {}, etag=None)  # unrelated path: etag still fine
    _grace, grace_etag = admin.get("apps/http/grace_period")
    admin.patch("apps/http/grace_period", "29s", etag=grace_etag)
    with pytest.raises(CaddyConflict, match="ETag mismatch"):
        admin.patch("apps/http/grace_period", "28s", etag=grace_etag)  # stale: never overwrites
    assert admin.config("apps/http/grace_period") == "29s"
    # A whole-config load is guarded the same way (what load() sends).
    whole, whole_etag = admin.get("")
    admin.patch("apps/http/grace_period", "26s")
    with pytest.raises(CaddyConflict):
        admin._request("POST", "/config/", body=whole, etag=whole_etag)
    assert admin.config("apps/http/grace_period") == "26s"


def test_two_concurrent_patches_one_conflicts_and_retries_no_update_lost(
    caddy: CaddyProc, alb_site: CaddySite, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    path = f"/id/{APP_PROXY_ID}/upstreams"
    both_read = threading.Barrier(2, timeout=10)
    calls: dict[str, int] = {"x": 0, "y": 0}
    errors: list[BaseException] = []

    def appender(name: str, dial: str) -> Any:
        def fn(ups: list[dict[str, str]]) -> list[dict[str, str]]:
            calls[name] += 1
            if calls[name] == 1:
                both_read.wait()  # both have read the same ETag before either writes
                if name == "y":
                    time.sleep(0.3)  # x writes first; y's ETag is then stale
            return [*ups, {"dial": dial}]

        return fn

    def run(name: str, dial: str) -> None:
        try:
            with CaddyAdmin(alb_site.admin) as admin:
                admin.update(path, appender(name, dial))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("x", "127.0.0.1:1")),
        threading.Thread(target=run, args=("y", "127.0.0.1:2")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
    assert calls == {"x": 1, "y": 2}  # y got 412, re-read and re-applied
    dials = [u["dial"] for u in caddy.admin.config(path)]
    assert dials == [upstreams[0].dial, "127.0.0.1:1", "127.0.0.1:2"]


def test_invalid_config_is_refused_with_caddys_message_and_old_keeps_serving(
    caddy: CaddyProc, alb_site: CaddySite
) -> None:
    admin = caddy.admin
    before = admin.config()
    with pytest.raises(CaddyError, match=r"Caddy refused the Caddyfile: .*Caddyfile:\d+") as exc:
        admin.adapt(render_caddyfile(alb_site).replace("file_server", "file_servr"))
    assert "\n" not in str(exc.value)
    broken = admin.adapt(render_caddyfile(alb_site))
    broken["apps"]["http"]["servers"]["srv0"]["listen"] = [":not-a-port"]
    with pytest.raises(CaddyError, match=r"Caddy refused the config: .*invalid listener address"):
        admin.load(broken)
    bad_upstream = admin.config()
    bad_upstream["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["routes"][0][
        "handle"
    ][0]["nope"] = 1
    with pytest.raises(CaddyError, match=r"unknown field"):
        admin.load(bad_upstream)
    assert admin.config() == before
    with client() as http:
        assert http.get(f"{caddy.http}/api/x").status_code == 200


def test_add_remove_upstreams_and_list(
    caddy: CaddyProc, alb_site: CaddySite, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    a, b = upstreams
    admin = caddy.admin
    assert admin.add_upstream(b.dial) is True
    assert admin.add_upstream(b.dial) is False
    assert admin.proxy_upstreams() == [a.dial, b.dial]
    listed = {u.address for u in admin.upstreams()}
    assert {a.dial, b.dial} <= listed
    with client() as http:
        seen = {http.get(f"{caddy.http}/api/who").json()["server"] for _ in range(6)}
    assert seen == {"a", "b"}
    assert admin.remove_upstream(a.dial) is True
    assert admin.remove_upstream(a.dial) is False
    with client() as http:
        seen = {http.get(f"{caddy.http}/api/who").json()["server"] for _ in range(4)}
    assert seen == {"b"}
    with pytest.raises(CaddyError, match="last upstream"):
        admin.remove_upstream(b.dial)


def test_drain_waits_for_in_flight_requests(
    caddy: CaddyProc, alb_site: CaddySite, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    a, b = upstreams
    admin = caddy.admin
    admin.add_upstream(b.dial)
    results: list[int] = []

    def slow() -> None:  # 4 of these over round robin: `a` gets some
        with client() as http:
            results.append(http.get(f"{caddy.http}/api/slow?ms=1500").status_code)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while a.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.in_flight > 0
    started = time.monotonic()
    admin.drain(a.dial, timeout=10)
    waited = time.monotonic() - started
    assert a.in_flight == 0
    assert waited > 0.5, f"drain returned after {waited:.2f} s with requests in flight"
    for t in threads:
        t.join(timeout=10)
    assert results == [200] * 4
    assert admin.proxy_upstreams() == [b.dial]
    served_before = a.served
    with client() as http:
        assert {http.get(f"{caddy.http}/api/x").json()["server"] for _ in range(4)} == {"b"}
    assert a.served == served_before


def test_admin_down_gives_a_clear_error_within_the_timeout() -> None:
    port = free_port()
    admin = CaddyAdmin(f"127.0.0.1:{port}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(CaddyError) as exc:
        admin.get("")
    assert time.monotonic() - started < 2
    assert str(exc.value) == (
        f"Caddy admin API at 127.0.0.1:{port} is not reachable (connection refused)"
        " - is caddy running?"
    )
    with pytest.raises(CaddyError, match=r"not healthy after 1 s: .*not reachable"):
        admin.wait_healthy(timeout=1)
    sock = CaddyAdmin("unix//nonexistent/caddy-admin.sock", timeout=1.0)
    with pytest.raises(CaddyError, match=r"not reachable \(no such socket\)"):
        sock.upstreams()


def test_admin_that_hangs_times_out() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts at the TCP level, never answers
        admin = CaddyAdmin(f"127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(CaddyError, match=r"did not answer within 0\.5 s"):
            admin.get("")
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "address",
    ["10.0.0.5:2019", "0.0.0.0:2019", "caddy.example.com:2019", ":2019", "[2001:db8::1]:2019"],
)
def test_non_loopback_admin_is_refused(address: str) -> None:
    with pytest.raises(CaddyError, match=r"must stay local|is not host:port"):
        CaddyAdmin(address)


@pytest.mark.parametrize(
    ("address", "base", "uds"),
    [
        ("localhost:2019", "http://localhost:2019", None),
        ("127.0.0.1:2019", "http://127.0.0.1:2019", None),
        ("[::1]:2019", "http://[::1]:2019", None),
        ("unix//run/caddy/admin.sock", "http://localhost", "/run/caddy/admin.sock"),
    ],
)
def test_local_admin_addresses(address: str, base: str, uds: str | None) -> None:
    assert parse_admin_address(address) == (base, uds)


def test_cli(caddy: CaddyProc, alb_site: CaddySite, capsys: pytest.CaptureFixture[str]) -> None:
    admin = ["caddy", "--admin", alb_site.admin]
    assert main([*admin, "get", "apps/http/servers/srv0/listen"]) == 0
    assert f'"{alb_site.http_bind}"' in capsys.readouterr().out
    assert main([*admin, "patch", "apps/http/grace_period", '"27s"']) == 0
    assert caddy.admin.config("apps/http/grace_period") == "27s"
    assert main([*admin, "upstreams"]) == 0
    assert "yes" in capsys.readouterr().out
    assert main(["caddy", "--admin", "10.1.2.3:2019", "upstreams"]) == 1
    assert "must stay local" in capsys.readouterr().err
    assert main(["caddy", "--admin", f"127.0.0.1:{free_port()}", "--timeout", "1", "get"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caddy: error: Caddy admin API at") and err.count("\n") == 1


def test_admin_on_a_unix_socket(
    tmp_path: Path, static_root: Path, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    exe = caddy_binary()
    require(exe is not None, "caddy binary not found")
    assert exe is not None
    sock = tmp_path / "admin.sock"
    site = CaddySite(
        mode="alb",
        hosts=(),
        upstreams=(upstreams[0].dial,),
        trusted_proxies=("10.0.0.0/16",),
        static_root=str(static_root),
        admin=f"unix/{sock}",
        http_port=free_port(),
    )
    (tmp_path / "Caddyfile").write_text(render_caddyfile(site))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    proc = subprocess.Popen(
        [exe, "run", "--config", "Caddyfile", "--adapter", "caddyfile"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with CaddyAdmin(f"unix/{sock}", timeout=2) as admin:
            admin.wait_healthy(f"http://127.0.0.1:{site.http_port}/healthz", timeout=15)
            assert admin.config("admin/listen") == f"unix/{sock}"
            assert admin.switch_mode(site) is True  # adds the @id
            assert admin.proxy_upstreams() == [upstreams[0].dial]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_switch_render_wait_and_upstream_commands(
    caddy: CaddyProc,
    alb_site: CaddySite,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = ["caddy", "--admin", alb_site.admin]
    site_args = [
        "--upstream",
        upstreams[0].dial,
        "--static-root",
        alb_site.static_root,
        "--http-port",
        str(alb_site.http_port),
        "--https-port",
        str(alb_site.https_port),
    ]
    assert (
        main(["caddy", "render", "--mode", "alb", "--trusted-proxy", "10.0.0.0/16", *site_args])
        == 0
    )
    assert "trusted_proxies static 10.0.0.0/16" in capsys.readouterr().out
    assert main(["caddy", "render", "--mode", "alb", *site_args]) == 1
    assert "trusted_proxies: alb mode needs the VPC CIDR" in capsys.readouterr().err
    assert main([*admin, "wait", "--url", f"{caddy.http}/healthz", "--wait-timeout", "5"]) == 0
    assert main([*admin, "add-upstream", upstreams[1].dial]) == 0
    assert main([*admin, "drain", upstreams[1].dial, "--drain-timeout", "5"]) == 0
    assert "drained" in capsys.readouterr().out
    caddyfile = caddy.home / "cli.Caddyfile"
    caddyfile.write_text(render_caddyfile(alb_site))
    assert main([*admin, "adapt", str(caddyfile)]) == 0
    assert '"@id": "app_proxy"' in capsys.readouterr().out
    assert main([*admin, "load", str(caddyfile)]) == 0
    assert "unchanged" in capsys.readouterr().out
