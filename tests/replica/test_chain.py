"""The request path like production: client -> ALB (TLS) -> Caddy (alb mode) -> gunicorn."""

from __future__ import annotations

import pytest

from tests.helpers import ON_THE_REPLICA_WORKER
from tests.replica.conftest import HTTP_PORT, HTTPS_PORT, Replica, new_client

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]


def test_http_listener_redirects_to_https_keeping_path_and_query(replica: Replica) -> None:
    host = replica.spec.apex
    with new_client() as http:
        r = http.get(f"http://{host}:{HTTP_PORT}/problems/7?tab=code")
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{host}:{HTTPS_PORT}/problems/7?tab=code"


@pytest.mark.parametrize("which", ["apex", "alias"])
def test_https_serves_the_front_end_with_hsts(replica: Replica, which: str) -> None:
    host = replica.spec.apex if which == "apex" else replica.spec.aliases[0]
    # verified against the replica's own CA (.local/ca.pem), SNI = the served name
    with new_client() as http:
        r = http.get(f"https://{host}:{HTTPS_PORT}/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    hsts = r.headers.get("strict-transport-security", "")
    assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) > 0
    assert r.http_version in ("HTTP/1.1", "HTTP/2")


def test_healthz_through_every_hop(replica: Replica) -> None:
    with replica.client() as http:
        r = http.get("/healthz")
    assert r.status_code == 200
    assert r.text.strip() == "ok"
    # Caddy was on the path (Via) and gunicorn answered (Server)
    assert "caddy" in r.headers.get("via", "").lower()
    assert "gunicorn" in r.headers.get("server", "").lower()


def test_django_sees_https_and_the_public_host(replica: Replica) -> None:
    with replica.client() as http:
        info = http.get("/api/request-info").json()
    assert info["scheme"] == "https"
    assert info["is_secure"] is True
    assert info["forwarded_proto"] == "https"
    assert info["host"] == f"{replica.spec.apex}:{HTTPS_PORT}"
    # the ALB stand-in appended the client's address like an ALB does
    assert info["forwarded_for"]


def test_unknown_host_is_refused_by_django(replica: Replica) -> None:
    # ALLOWED_HOSTS stays strict for everything but the health checks
    with replica.client() as http:
        r = http.get("/api/request-info", headers={"Host": f"evil.example:{HTTPS_PORT}"})
    assert r.status_code == 400
