"""The ID token's signature: RS256 verified against the provider's JWKS, nothing else.

The provider runs in this process (`own_provider`), so a test can make it hand out a
token the app must refuse, through the whole sign-in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from tests.app.support import CLIENT_ID, CLIENT_SECRET, load_fake_oidc
from tests.app.test_oidc import authorize, browser, start_login


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(data: dict[str, object]) -> str:
    return b64(json.dumps(data).encode())


def hs256(claims: dict[str, Any], secret: str) -> str:
    """What the old fake made: a token signed with the client secret."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def callback_with(provider: Any, monkeypatch: pytest.MonkeyPatch, make_jwt: Any) -> Any:
    """Sign in while the provider's token endpoint answers with make_jwt(claims)."""
    monkeypatch.setattr(provider.signer, "make_jwt", make_jwt)
    client = browser()
    response = client.get("/auth/google/callback", authorize(start_login(client, "eve")))
    assert client.get("/api/me/").status_code == (200 if response.status_code == 302 else 401)
    return response


def test_a_token_from_the_providers_key_signs_in(own_provider: Any) -> None:
    client = browser()
    params = authorize(start_login(client, "frank@example.test"))
    assert client.get("/auth/google/callback", params).status_code == 302
    assert client.get("/api/me/").json()["email"] == "frank@example.test"


def test_a_token_signed_with_another_key_is_refused(
    own_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forger = load_fake_oidc().Signer()
    forger.kid = own_provider.signer.kid  # claims to be the provider's key
    response = callback_with(own_provider, monkeypatch, forger.make_jwt)
    assert response.status_code == 400
    assert "signature is invalid" in response.json()["error"]


def test_an_hs256_token_signed_with_the_client_secret_is_refused(
    own_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever holds the client secret could mint any user's token: never accepted.
    response = callback_with(own_provider, monkeypatch, lambda c: hs256(c, CLIENT_SECRET))
    assert response.status_code == 400
    assert "unsupported algorithm ('HS256')" in response.json()["error"]


def test_a_token_whose_claims_were_changed_is_refused(
    own_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    genuine = own_provider.signer.make_jwt

    def tampered(claims: dict[str, Any]) -> str:
        header, _, signature = genuine(claims).split(".")
        return f"{header}.{segment({**claims, 'sub': 'admin'})}.{signature}"

    response = callback_with(own_provider, monkeypatch, tampered)
    assert response.status_code == 400
    assert "signature is invalid" in response.json()["error"]


def test_other_algorithms_and_unknown_keys_are_refused(own_provider: Any) -> None:
    from accounts import oidc

    jwks_uri = f"{own_provider.internal_url}/jwks"
    claims = {"iss": own_provider.issuer, "aud": CLIENT_ID, "sub": "1", "exp": time.time() + 60}
    body = segment(claims)
    for alg in ("none", "ES256", "RS512", "PS256", None):
        with pytest.raises(oidc.OIDCError, match="unsupported algorithm"):
            oidc.decode_id_token(f"{segment({'alg': alg})}.{body}.AAAA", jwks_uri)
    genuine = own_provider.signer.make_jwt(claims)
    signature = genuine.rsplit(".", 1)[1]
    unknown = segment({"alg": "RS256", "kid": "not-a-provider-key"})
    with pytest.raises(oidc.OIDCError, match="signing key"):
        oidc.decode_id_token(f"{unknown}.{body}.{signature}", jwks_uri)
    critical = segment({"alg": "RS256", "kid": own_provider.signer.kid, "crit": ["exp"]})
    with pytest.raises(oidc.OIDCError, match="critical"):
        oidc.decode_id_token(f"{critical}.{body}.{signature}", jwks_uri)
    with pytest.raises(oidc.OIDCError, match="malformed"):
        oidc.decode_id_token("not-a-jwt", jwks_uri)
    assert oidc.decode_id_token(genuine, jwks_uri)[1]["sub"] == "1"


def test_a_rotated_key_is_fetched_once_the_cached_set_is_old(
    own_provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts import jwks, oidc

    jwks_uri = f"{own_provider.internal_url}/jwks"
    claims = {"sub": "1"}
    oidc.decode_id_token(own_provider.signer.make_jwt(claims), jwks_uri)  # caches the set
    own_provider.signer = load_fake_oidc().Signer()  # the provider rotates its key
    rotated = own_provider.signer.make_jwt(claims)
    with pytest.raises(oidc.OIDCError, match="signing key"):  # a new kid: not at once
        oidc.decode_id_token(rotated, jwks_uri)
    monkeypatch.setattr(jwks, "REFETCH_AFTER", 0)
    assert oidc.decode_id_token(rotated, jwks_uri)[1] == claims
