"""Google sign-in (OIDC code flow) against the fake provider running as a real process."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from tests.app.support import CLIENT_ID, HOST, ORIGIN


def browser() -> Client:
    return Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https", HTTP_X_REAL_IP="203.0.113.9")


def start_login(client: Client, login_hint: str | None = None) -> str:
    """GET /auth/google/login; returns the provider URL the browser is sent to."""
    url = "/auth/google/login" + (f"?login_hint={login_hint}" if login_hint else "")
    response = client.get(url)
    assert response.status_code == 302, response.content
    return str(response["Location"])


def authorize(provider_url: str) -> dict[str, str]:
    """What the browser does at the provider: it redirects back with code + state."""
    response = httpx.get(provider_url, follow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    callback = urlsplit(response.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == (
        f"{ORIGIN}/auth/google/callback"
    )
    return {k: v[0] for k, v in parse_qs(callback.query).items()}


def sign_in(client: Client, login_hint: str | None = None):  # type: ignore[no-untyped-def]
    params = authorize(start_login(client, login_hint))
    return client.get("/auth/google/callback", params)


def test_login_redirects_to_the_provider_with_the_exact_redirect_uri(
    django_app: dict[str, str], fake_oidc: str
) -> None:
    client = browser()
    location = start_login(client)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake_oidc}/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == django_app["GOOGLE_REDIRECT_URI"]
    assert query["response_type"] == "code"
    assert query["scope"] == "openid email profile"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    pending = client.session["oidc_login"]
    assert (pending["state"], pending["nonce"]) == (query["state"], query["nonce"])

    # The provider saw exactly what the app sent.
    httpx.get(location, follow_redirects=False, timeout=10)
    last = httpx.get(f"{fake_oidc}/last-authorize", timeout=10).json()
    assert last["redirect_uri"] == django_app["GOOGLE_REDIRECT_URI"]
    assert last["client_id"] == CLIENT_ID


def test_login_uses_pkce_s256_with_the_verifier_kept_in_the_session(
    django_app: dict[str, str],
) -> None:
    import base64
    import hashlib

    client = browser()
    query = {k: v[0] for k, v in parse_qs(urlsplit(start_login(client)).query).items()}
    verifier = client.session["oidc_login"]["code_verifier"]
    assert 43 <= len(verifier) <= 128  # RFC 7636 §4.1
    assert verifier not in start_login(browser())  # a fresh one per attempt, never sent
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == digest.decode()
    # The provider (which checks PKCE) releases the token only for that verifier.
    assert client.get("/auth/google/callback", authorize(start_login(client))).status_code == 302


def test_full_login_creates_the_user_then_reuses_it(django_app: dict[str, str]) -> None:
    from accounts.models import User
    from logs.models import LogRecord

    client = browser()
    response = sign_in(client, "alice@example.test")
    assert response.status_code == 302, response.content
    assert response["Location"] == django_app["FRONTEND_BASE_URL"] + "/"

    me = client.get("/api/me/")
    assert me.status_code == 200
    alice = me.json()
    assert alice["email"] == "alice@example.test"
    stored = User.objects.get(google_sub=alice["sub"])  # in PostgreSQL, keyed by sub
    assert stored.pk == alice["id"]
    assert not stored.has_usable_password()
    assert LogRecord.objects.filter(source="auth", user=stored, message="signed in").exists()
    users_before = User.objects.count()

    # A second sign-in (new browser) finds the same user by sub.
    again = browser()
    assert sign_in(again, "alice@example.test").status_code == 302
    assert again.get("/api/me/").json()["id"] == alice["id"]
    assert User.objects.count() == users_before

    # A different Google account is a different user.
    other = browser()
    assert sign_in(other, "bob@example.test").status_code == 302
    assert other.get("/api/me/").json()["id"] != alice["id"]
    assert User.objects.count() == users_before + 1


def test_signed_in_user_can_write_then_log_out(django_app: dict[str, str]) -> None:
    client = Client(enforce_csrf_checks=True, HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
    assert sign_in(client, "carol@example.test").status_code == 302
    token = client.get("/api/csrf/").json()["csrfToken"]
    headers = {"X-CSRFToken": token, "Origin": ORIGIN}
    created = client.post(
        "/api/problems/", {"title": "by carol"}, content_type="application/json", headers=headers
    )
    assert created.status_code == 201
    assert created.json()["created_by"] == "Carol"
    # Logout is POST + CSRF; the session is gone afterwards.
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/me/").status_code == 401


def test_login_on_an_alias_host_moves_to_the_callback_host(django_app: dict[str, str]) -> None:
    alias = Client(HTTP_HOST=f"www.{HOST}", HTTP_X_FORWARDED_PROTO="https")
    response = alias.get("/auth/google/login?login_hint=x")
    assert response.status_code == 302
    assert response["Location"] == f"{ORIGIN}/auth/google/login?login_hint=x"


def test_email_and_name_are_refreshed_at_sign_in(django_app: dict[str, str]) -> None:
    from accounts.models import User
    from accounts.views import _upsert_user

    user = _upsert_user({"sub": "refresh-1", "email": "old@example.test", "name": "Old"})
    again = _upsert_user({"sub": "refresh-1", "email": "new@example.test"})
    assert again.pk == user.pk
    stored = User.objects.get(pk=user.pk)
    assert (stored.email, stored.name) == ("new@example.test", "Old")


def test_state_mismatch_is_400(django_app: dict[str, str]) -> None:
    client = browser()
    params = authorize(start_login(client))
    response = client.get("/auth/google/callback", {**params, "state": "forged"})
    assert response.status_code == 400
    assert "state" in response.json()["error"]
    assert client.get("/api/me/").status_code == 401


def test_callback_without_a_login_in_progress_is_400(django_app: dict[str, str]) -> None:
    response = browser().get("/auth/google/callback", {"code": "x", "state": "y"})
    assert response.status_code == 400
    assert "no sign-in is in progress" in response.json()["error"]


def test_a_code_from_another_attempt_is_rejected(django_app: dict[str, str]) -> None:
    client = browser()
    first = authorize(start_login(client))  # code bound to the first challenge and nonce
    second = authorize(start_login(client))  # the session now holds the second attempt
    response = client.get(
        "/auth/google/callback", {"code": first["code"], "state": second["state"]}
    )
    # The provider refuses it (PKCE: another verifier); were it not to, the nonce would
    # (test_claim_validation).
    assert response.status_code == 400
    assert "rejected the authorization code (invalid_grant)" in response.json()["error"]


def test_reused_code_is_rejected(django_app: dict[str, str]) -> None:
    client = browser()
    params = authorize(start_login(client))
    assert client.get("/auth/google/callback", params).status_code == 302
    replay = browser()
    fresh = authorize(start_login(replay))
    response = replay.get("/auth/google/callback", {**params, "state": fresh["state"]})
    assert response.status_code == 400
    assert "rejected the authorization code" in response.json()["error"]


def test_provider_error_is_400(django_app: dict[str, str]) -> None:
    client = browser()
    start_login(client)
    response = client.get("/auth/google/callback", {"error": "access_denied", "state": "s"})
    assert response.status_code == 400
    assert "access_denied" in response.json()["error"]


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": "https://evil.example"}, "issuer"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": 1}, "expired"),
        ({"nonce": "other"}, "nonce"),
        ({"sub": ""}, "subject"),
    ],
)
def test_claim_validation(
    django_app: dict[str, str], fake_oidc: str, claims: dict[str, object], message: str
) -> None:
    import time

    from accounts import oidc

    good = {"iss": fake_oidc, "aud": CLIENT_ID, "exp": time.time() + 60, "nonce": "n", "sub": "1"}
    with pytest.raises(oidc.OIDCError, match=message):
        oidc.validate_claims({**good, **claims}, fake_oidc, "n")
    assert oidc.validate_claims(good, fake_oidc, "n")["sub"] == "1"


def test_unreachable_provider_is_a_clear_error(django_app: dict[str, str]) -> None:
    from accounts import oidc
    from django.test import override_settings

    with override_settings(GOOGLE_OIDC_ISSUER="http://127.0.0.1:9"):
        response = browser().get("/auth/google/login")
    assert response.status_code == 502
    assert "cannot load the sign-in provider's configuration" in response.json()["error"]
    oidc.clear_cache()


def test_discovery_is_cached(django_app: dict[str, str], fake_oidc: str) -> None:
    from accounts import oidc

    oidc.clear_cache()
    first = oidc.discover()
    assert first["issuer"] == fake_oidc
    assert oidc.discover() is first
