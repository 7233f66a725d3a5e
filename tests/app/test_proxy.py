"""Behind a TLS-terminating proxy: https detection, no redirect loop, real client IP."""

from __future__ import annotations

from django.test import Client

from tests.app.support import HOST


def test_https_detected_from_x_forwarded_proto(client: Client) -> None:
    response = client.get("/api/request-info", HTTP_X_FORWARDED_FOR="203.0.113.7, 10.0.1.5")
    assert response.status_code == 200
    info = response.json()
    assert info["scheme"] == "https"
    assert info["is_secure"] is True
    assert info["host"] == HOST
    assert info["client_ip"] == "203.0.113.7"  # X-Real-IP from Caddy
    assert info["remote_addr"] == "127.0.0.1"  # the proxy's address
    assert info["forwarded_for"] == "203.0.113.7, 10.0.1.5"
    assert info["forwarded_proto"] == "https"


def test_client_ip_falls_back_to_remote_addr(django_app: dict[str, str]) -> None:
    direct = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="198.51.100.4")
    assert direct.get("/api/request-info").json()["client_ip"] == "198.51.100.4"


def test_plain_http_redirects_once_to_https(django_app: dict[str, str]) -> None:
    plain = Client(HTTP_HOST=HOST)
    response = plain.get("/api/version")
    assert response.status_code == 301
    assert response["Location"] == f"https://{HOST}/api/version"


def test_no_redirect_loop_behind_the_proxy(client: Client) -> None:
    # The proxy already terminated TLS: Django must serve, not redirect again.
    response = client.get("/api/version", follow=True)
    assert response.redirect_chain == []
    assert response.status_code == 200
    assert response.json() == {"version": "1.2.3-test"}


def test_lowercase_https_only(django_app: dict[str, str]) -> None:
    # SECURE_PROXY_SSL_HEADER compares the exact value Caddy sends ("https").
    other = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="http")
    assert other.get("/api/version").status_code == 301


def test_security_headers_and_secure_cookies(client: Client) -> None:
    response = client.get("/api/csrf/")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "includeSubDomains" in response["Strict-Transport-Security"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    cookie = response.cookies["csrftoken"]
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"


def test_admin_static_files_served_by_whitenoise(client: Client) -> None:
    from django.contrib.staticfiles.storage import staticfiles_storage

    url = staticfiles_storage.url("admin/css/base.css")
    assert url.startswith("/static/admin/css/base.") and url != "/static/admin/css/base.css"
    response = client.get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert b"body" in body
    assert "max-age" in response["Cache-Control"]


def test_admin_login_page_renders(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/" in response.content
    assert client.get("/admin/").status_code == 302  # to the login page
