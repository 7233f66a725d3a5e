"""The reference app inside the running replica, through the ALB stand-in (HTTPS on
127.0.0.1): what tests/replica/test_chain.py and test_data.py do not already cover.
Bounded: a few dozen requests, nothing is restarted."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.helpers import ON_THE_REPLICA_WORKER
from tests.replica.conftest import OIDC_PORT, Replica, compose, unique

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]


def test_app_sees_a_client_address_not_caddys(replica: Replica) -> None:
    with replica.client() as http:
        info = http.get("/api/request-info").json()
    assert info["forwarded_proto"] == "https"
    assert info["client_ip"] and info["client_ip"] != info["remote_addr"]


def test_app_sees_the_client_address_the_alb_saw(replica: Replica) -> None:
    with replica.client() as http:
        info = http.get("/api/request-info").json()
    first_hop = info["forwarded_for"].split(",")[0].strip()
    assert info["client_ip"] == first_hop


def test_readyz_reports_the_version(replica: Replica) -> None:
    with replica.client() as http:
        ready = http.get("/readyz")
        version = http.get("/api/version")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["version"] == version.json()["version"]


def test_admin_static_files_are_served_by_whitenoise(replica: Replica) -> None:
    with replica.client() as http:
        login = http.get("/admin/login/")
        assert login.status_code == 200
        css = re.search(r'href="(/static/admin/css/[^"]+)"', login.text)
        assert css, "the admin page links no collected stylesheet"
        response = http.get(css.group(1))
    assert response.status_code == 200
    assert "max-age" in response.headers.get("cache-control", "")


def test_second_sign_in_reuses_the_user(replica: Replica) -> None:
    email = unique("again").replace(" ", "-") + "@example.test"
    with replica.client() as first:
        me = replica.sign_in(first, email)
    with replica.client() as second:
        assert replica.sign_in(second, email)["id"] == me["id"]
    last = httpx.get(f"http://127.0.0.1:{OIDC_PORT}/last-authorize", timeout=10).json()
    assert last["redirect_uri"] == replica.spec.parameters["GOOGLE_REDIRECT_URI"]


def test_untrusted_origin_and_anonymous_writes_are_refused(replica: Replica) -> None:
    with replica.client() as http:
        replica.sign_in(http, "origin-check@example.test")
        headers = replica.csrf_headers(http)
        evil = {**headers, "Origin": "https://evil.example", "Referer": "https://evil.example/"}
        refused = http.post("/api/problems/", json={"title": "x"}, headers=evil)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
    with replica.client() as anonymous:
        headers = replica.csrf_headers(anonymous)
        response = anonymous.post("/api/problems/", json={"title": "x"}, headers=headers)
        assert response.status_code == 401


def test_oauth_codes_never_reach_the_app_log(replica: Replica) -> None:
    with replica.client() as http:
        replica.sign_in(http, "log-check@example.test")
    logs = compose("logs", "--no-color", "--tail", "500", "app").stdout
    callbacks = [line for line in logs.splitlines() if "/auth/google/callback" in line]
    assert callbacks, "no access-log line for the callback"
    assert not [line for line in callbacks if "code=" in line or "state=" in line]
