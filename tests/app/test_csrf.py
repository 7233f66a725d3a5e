"""CSRF over https behind the proxy: trusted Origin works, anything else is refused."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client, override_settings

from tests.app.support import HOST, ORIGIN, make_user


def write(client: Client, token: str | None, **headers: str):
    if token is not None:
        headers["X-CSRFToken"] = token
    return client.post(
        "/api/problems/",
        data=json.dumps({"title": "csrf"}),
        content_type="application/json",
        headers=headers,
    )


def test_csrf_endpoint_sets_cookie_and_returns_token(client: Client) -> None:
    response = client.get("/api/csrf/")
    assert response.status_code == 200
    token = response.json()["csrfToken"]
    assert token and "csrftoken" in response.cookies


def test_trusted_origin_write_succeeds(signed_in: tuple[Client, str, Any]) -> None:
    client, token, _ = signed_in
    assert write(client, token, Origin=ORIGIN).status_code == 201
    assert write(client, token, Origin=f"https://www.{HOST}").status_code == 201


def test_referer_is_enough_without_origin(signed_in: tuple[Client, str, Any]) -> None:
    client, token, _ = signed_in
    assert write(client, token, Referer=f"{ORIGIN}/problems").status_code == 201


def test_untrusted_origin_is_refused(signed_in: tuple[Client, str, Any]) -> None:
    client, token, _ = signed_in
    response = write(client, token, Origin="https://evil.example")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    # The http:// variant of our own origin is not trusted either.
    assert write(client, token, Origin=f"http://{HOST}").status_code == 403


def test_missing_token_is_refused(signed_in: tuple[Client, str, Any]) -> None:
    client, _, _ = signed_in
    assert write(client, None, Origin=ORIGIN).status_code == 403
    assert write(client, "wrong" * 8, Origin=ORIGIN).status_code == 403


def fresh_client(host: str = HOST, **extra: Any) -> tuple[Client, str]:
    """A new client (middleware reads settings when loaded), signed in, with a token."""
    client = Client(
        enforce_csrf_checks=True, HTTP_HOST=host, HTTP_X_FORWARDED_PROTO="https", **extra
    )
    client.force_login(make_user())
    return client, client.get("/api/csrf/").json()["csrfToken"]


def test_trusted_origins_come_from_the_environment(django_app: dict[str, str]) -> None:
    from django.conf import settings

    assert django_app["DJANGO_CSRF_TRUSTED_ORIGINS"].split(",") == settings.CSRF_TRUSTED_ORIGINS
    # A request whose Host differs from the public origin passes only via the list.
    with override_settings(ALLOWED_HOSTS=[HOST, "app.internal"]):
        client, token = fresh_client("app.internal")
        assert write(client, token, Origin=ORIGIN).status_code == 201
        with override_settings(CSRF_TRUSTED_ORIGINS=[]):
            client, token = fresh_client("app.internal")
            assert write(client, token, Origin=ORIGIN).status_code == 403


def test_proxy_ssl_header_makes_same_origin_csrf_work(django_app: dict[str, str]) -> None:
    """The pitfall SECURE_PROXY_SSL_HEADER prevents (DESIGN §9), shown without the
    trusted-origins list: with the header Django knows the request is https and the
    same-origin check passes; without it Django thinks http and refuses the write."""
    with override_settings(CSRF_TRUSTED_ORIGINS=[]):
        client, token = fresh_client()
        assert write(client, token, Origin=ORIGIN).status_code == 201
        with override_settings(SECURE_PROXY_SSL_HEADER=None, SECURE_SSL_REDIRECT=False):
            client, token = fresh_client()
            assert write(client, token, Origin=ORIGIN).status_code == 403
