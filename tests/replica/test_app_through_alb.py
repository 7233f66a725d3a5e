"""The reference app inside the running replica, through the ALB stand-in (HTTPS on
127.0.0.1): proxy headers, health checks, CSRF, and Google sign-in against the
fake provider. Bounded: a few dozen requests, nothing is restarted."""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import ROOT, require

pytestmark = pytest.mark.replica

APEX = os.environ.get("REPLICA_HOST", "jobtory.localhost")
HTTPS_PORT = int(os.environ.get("ALB_HTTPS_PORT", "8443"))
OIDC_PORT = int(os.environ.get("OIDC_PORT", "9400"))
ORIGIN = f"https://{APEX}:{HTTPS_PORT}" if HTTPS_PORT != 443 else f"https://{APEX}"
CA_FILE = ROOT / ".local" / "ca.pem"
OIDC = f"http://127.0.0.1:{OIDC_PORT}"


def replica_client() -> httpx.Client:
    """A browser talking to the ALB on 127.0.0.1 with the public name (SNI + Host)."""
    context = ssl.create_default_context(cafile=str(CA_FILE))
    return httpx.Client(
        base_url=f"https://127.0.0.1:{HTTPS_PORT}",
        headers={"Host": f"{APEX}:{HTTPS_PORT}"},
        verify=context,
        timeout=10,
        follow_redirects=False,
    )


def get(client: httpx.Client, path: str, **kwargs: object) -> httpx.Response:
    return client.get(path, extensions={"sni_hostname": APEX}, **kwargs)  # type: ignore[arg-type]


def post(client: httpx.Client, path: str, **kwargs: object) -> httpx.Response:
    return client.post(path, extensions={"sni_hostname": APEX}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def alb() -> Iterator[httpx.Client]:
    require(CA_FILE.exists(), f"replica CA {CA_FILE} missing (scripts/up)")
    client = replica_client()
    try:
        ok = get(client, "/healthz").status_code == 200
    except httpx.HTTPError:
        ok = False
    require(ok, f"the replica is not answering at {ORIGIN} (scripts/up)")
    yield client
    client.close()


def test_app_sees_https_and_the_public_host(alb: httpx.Client) -> None:
    info = get(alb, "/api/request-info").json()
    assert info["scheme"] == "https" and info["is_secure"] is True
    assert info["host"] == f"{APEX}:{HTTPS_PORT}"
    assert info["forwarded_proto"] == "https"
    assert info["client_ip"] != info["remote_addr"]  # not Caddy's own address


@pytest.mark.xfail(
    reason="local spec trusts 172.30.0.0/24 in Caddy, which includes the docker gateway "
    "the host's requests come from, so {client_ip} stops at the ALB stand-in",
    strict=False,
)
def test_app_sees_the_client_address_the_alb_saw(alb: httpx.Client) -> None:
    info = get(alb, "/api/request-info").json()
    first_hop = info["forwarded_for"].split(",")[0].strip()
    assert info["client_ip"] == first_hop


def test_health_and_version(alb: httpx.Client) -> None:
    assert get(alb, "/healthz").text == "ok"
    ready = get(alb, "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "version" in get(alb, "/api/version").json()


def test_plain_http_is_redirected_to_https() -> None:
    response = httpx.get(
        f"http://127.0.0.1:{int(os.environ.get('ALB_HTTP_PORT', '8080'))}/api/version",
        headers={"Host": APEX},
        timeout=10,
    )
    assert response.status_code in (301, 302, 308)
    assert response.headers["location"].startswith("https://")


def test_admin_static_files_are_served(alb: httpx.Client) -> None:
    login = get(alb, "/admin/login/")
    assert login.status_code == 200
    css = next(
        part.split('"')[0]
        for part in login.text.split('href="')[1:]
        if part.startswith("/static/admin/css/")
    )
    assert get(alb, css).status_code == 200


def sign_in(client: httpx.Client, hint: str) -> httpx.Response:
    start = get(client, f"/auth/google/login?login_hint={hint}")
    assert start.status_code == 302, start.text
    provider = httpx.get(start.headers["location"], timeout=10, follow_redirects=False)
    assert provider.status_code == 302, provider.text
    back = urlsplit(provider.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{ORIGIN}/auth/google/callback"
    return get(client, f"{back.path}?{back.query}")


def test_google_sign_in_round_trip(alb: httpx.Client) -> None:
    email = f"replica-{secrets.token_hex(4)}@example.test"
    with replica_client() as browser:
        done = sign_in(browser, email)
        assert done.status_code == 302, done.text
        assert done.headers["location"] == f"{ORIGIN}/"
        me = get(browser, "/api/me/")
        assert me.status_code == 200 and me.json()["email"] == email
        first_id = me.json()["id"]
    last = httpx.get(f"{OIDC}/last-authorize", timeout=10).json()
    assert last["redirect_uri"] == f"{ORIGIN}/auth/google/callback"
    with replica_client() as again:
        assert sign_in(again, email).status_code == 302
        assert get(again, "/api/me/").json()["id"] == first_id


def test_csrf_write_from_the_public_origin(alb: httpx.Client) -> None:
    with replica_client() as browser:
        assert sign_in(browser, "replica-writer@example.test").status_code == 302
        token = get(browser, "/api/csrf/").json()["csrfToken"]
        title = f"replica {secrets.token_hex(4)}"
        headers = {"X-CSRFToken": token, "Origin": ORIGIN}
        created = post(browser, "/api/problems/", json={"title": title}, headers=headers)
        assert created.status_code == 201, created.text
        listed = get(browser, "/api/problems/").json()["results"]
        assert title in [p["title"] for p in listed]
        evil = {"X-CSRFToken": token, "Origin": "https://evil.example"}
        assert post(browser, "/api/problems/", json={"title": "x"}, headers=evil).status_code == 403
    anonymous = get(alb, "/api/csrf/")
    refused = post(
        alb,
        "/api/problems/",
        json={"title": "anonymous"},
        headers={"X-CSRFToken": anonymous.json()["csrfToken"], "Origin": ORIGIN},
    )
    assert refused.status_code == 401
