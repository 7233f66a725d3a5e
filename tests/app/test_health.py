"""Health endpoints answer before host validation and before the HTTPS redirect."""

from __future__ import annotations

from django.test import Client

from tests.app.support import HOST, Postgres, postgres_down


def test_healthz_answers_for_a_load_balancer_ip_host(django_app: dict[str, str]) -> None:
    # An ALB health check: plain HTTP, the target's private IP as Host.
    alb = Client(HTTP_HOST="10.0.3.7")
    response = alb.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_readyz_answers_for_a_load_balancer_ip_host(django_app: dict[str, str]) -> None:
    response = Client(HTTP_HOST="10.0.3.7").get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ready"


def test_allowed_hosts_stays_strict_for_other_paths(django_app: dict[str, str]) -> None:
    alb = Client(HTTP_HOST="10.0.3.7", HTTP_X_FORWARDED_PROTO="https")
    response = alb.get("/api/problems/")
    assert response.status_code == 400
    assert response.json() == {"error": "bad request"}
    # ... and also over plain HTTP (no redirect to an attacker-chosen host).
    assert Client(HTTP_HOST="evil.example").get("/api/version").status_code == 400


def test_health_is_not_redirected_to_https(django_app: dict[str, str]) -> None:
    plain = Client(HTTP_HOST=HOST)  # no X-Forwarded-Proto: plain HTTP
    assert plain.get("/healthz").status_code == 200
    assert plain.get("/readyz").status_code == 200
    assert plain.get("/healthz/").status_code == 200


def test_readyz_503_while_the_database_is_down_then_recovers(
    django_app: dict[str, str], postgres: Postgres
) -> None:
    client = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
    assert client.get("/readyz").status_code == 200  # a persistent connection exists
    with postgres_down(postgres):
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert any("database" in reason for reason in body["reasons"])
        assert client.get("/healthz").status_code == 200  # the process is still up
    # Same process, no restart: the dead connection is replaced by itself.
    response = client.get("/api/problems/")
    assert response.status_code == 200, response.content
    assert client.get("/readyz").status_code == 200
