"""The fake OIDC provider on its own: public vs internal URLs, codes, tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.app.support import load_fake_oidc

VERIFIER = "a-pkce-code-verifier-of-43-or-more-characters"
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


def load_fake() -> ModuleType:
    return load_fake_oidc()


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    fake = load_fake()
    server = fake.make_server(
        "127.0.0.1", 0, "http://public.example:9400", "http://oidc:9400", quiet=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def authorize(url: str, **params: str) -> httpx.Response:
    query = {
        "client_id": "cid",
        "redirect_uri": "https://app.example/auth/google/callback?x=1",
        "response_type": "code",
        "scope": "openid email profile",
        "state": "st",
        "nonce": "no",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **params,
    }
    return httpx.get(f"{url}/authorize", params={k: v for k, v in query.items() if v}, timeout=10)


def token(url: str, code: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "https://app.example/auth/google/callback?x=1",
        "client_id": "cid",
        "client_secret": "shh",
        "code_verifier": VERIFIER,
        **extra,
    }
    return httpx.post(f"{url}/token", data=form, timeout=10)


def test_discovery_splits_public_and_internal_urls(provider: str) -> None:
    doc = httpx.get(f"{provider}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == "http://oidc:9400"
    assert doc["authorization_endpoint"] == "http://public.example:9400/authorize"
    assert doc["token_endpoint"] == "http://oidc:9400/token"
    assert doc["userinfo_endpoint"] == "http://oidc:9400/userinfo"


def test_authorize_redirects_with_code_and_state_and_is_remembered(provider: str) -> None:
    response = authorize(provider, login_hint="dana@example.test")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert location.netloc == "app.example" and query["x"] == ["1"]
    assert query["state"] == ["st"] and query["code"][0]
    last = httpx.get(f"{provider}/last-authorize", timeout=10).json()
    assert last["redirect_uri"] == "https://app.example/auth/google/callback?x=1"
    assert last["login_hint"] == "dana@example.test"


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_token_returns_an_rs256_id_token_its_jwks_verifies_once(provider: str) -> None:
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    response = token(provider, code)
    assert response.status_code == 200, response.text
    id_token = response.json()["id_token"]
    header_b64, claims_b64, signature_b64 = id_token.split(".")
    header = json.loads(b64decode(header_b64))
    assert header["alg"] == "RS256"  # as Google signs: never with the client secret

    # The key the discovery's jwks_uri serves verifies it; a byte changed does not.
    doc = httpx.get(f"{provider}/.well-known/openid-configuration", timeout=10).json()
    assert doc["jwks_uri"] == "http://oidc:9400/jwks"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    (jwk,) = httpx.get(f"{provider}/jwks", timeout=10).json()["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "RSA",
        "RS256",
        "sig",
        header["kid"],
    )
    assert "d" not in jwk  # the public half only
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64decode(jwk["e"]), "big"), int.from_bytes(b64decode(jwk["n"]), "big")
    ).public_key()
    assert public.key_size >= 2048
    signed = f"{header_b64}.{claims_b64}".encode()
    public.verify(b64decode(signature_b64), signed, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(b64decode(signature_b64), signed + b" ", padding.PKCS1v15(), hashes.SHA256())

    body = json.loads(b64decode(claims_b64))
    assert body["iss"] == "http://oidc:9400" and body["aud"] == "cid"
    assert body["nonce"] == "no" and body["email"] == "test.user@example.test"
    userinfo = httpx.get(
        f"{provider}/userinfo",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        timeout=10,
    )
    assert userinfo.json()["sub"] == body["sub"]
    assert token(provider, code).json() == {"error": "invalid_grant"}  # one use only


def test_each_start_makes_its_own_key() -> None:
    fake = load_fake()
    first, second = fake.Signer().jwks()["keys"][0], fake.Signer().jwks()["keys"][0]
    assert first["n"] != second["n"] and first["kid"] != second["kid"]


def test_token_checks_redirect_uri_and_client(provider: str) -> None:
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    wrong = token(provider, code, redirect_uri="https://evil.example/cb")
    assert wrong.status_code == 400
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    assert token(provider, code, client_secret="").status_code == 401


def test_authorize_rejects_bad_requests(provider: str) -> None:
    assert authorize(provider, redirect_uri="not a url").status_code == 400
    assert authorize(provider, response_type="token").status_code == 400
    assert authorize(provider, scope="email").status_code == 400


def test_pkce_s256_is_required_and_checked(provider: str) -> None:
    assert load_fake().pkce_challenge(VERIFIER) == CHALLENGE
    for missing in (
        {"code_challenge": ""},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": ""},
    ):
        response = authorize(provider, **missing)
        assert response.status_code == 400 and "PKCE" in response.text
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    assert token(provider, code, code_verifier="another-verifier" * 3).status_code == 400
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    assert token(provider, code, code_verifier="").json() == {"error": "invalid_grant"}
    code = parse_qs(urlsplit(authorize(provider).headers["location"]).query)["code"][0]
    assert token(provider, code).status_code == 200


def test_login_hint_users_are_stable() -> None:
    fake = load_fake()
    alice = fake.user_from_hint("Alice@Example.test")
    assert alice == fake.user_from_hint("alice@example.test")
    assert alice["email"] == "alice@example.test" and alice["sub"].isdigit()
    assert fake.user_from_hint("bob")["sub"] == "bob"
    assert fake.user_from_hint("") == fake.DEFAULT_USER
