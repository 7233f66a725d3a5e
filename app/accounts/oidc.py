"""Google sign-in: the OpenID Connect authorization code flow, server side.

Discovery comes from GOOGLE_OIDC_ISSUER + '/.well-known/openid-configuration'
(cached). The ID token is received directly from the token endpoint over TLS in
exchange for the code and client secret; per Google's documentation its
signature need not be verified in that case, so RS256 tokens are trusted after
checking iss, aud, exp and nonce. HS256 tokens (the local fake provider) are
verified with the client secret, as OIDC Core §10.1 specifies. Anything else
(including alg "none") is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

import httpx
from django.conf import settings

#: Google documents both spellings of its issuer.
GOOGLE_ISSUERS = {"https://accounts.google.com", "accounts.google.com"}
CLOCK_SKEW = 60  # seconds


class OIDCError(Exception):
    """The sign-in cannot continue; the message is safe to show the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


_cache_lock = threading.Lock()
_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def clear_cache() -> None:
    with _cache_lock:
        _discovery_cache.clear()


def discover(issuer: str | None = None) -> dict[str, Any]:
    """The provider's discovery document, cached for OIDC_DISCOVERY_TTL seconds."""
    issuer = (issuer or settings.GOOGLE_OIDC_ISSUER).rstrip("/")
    now = time.monotonic()
    with _cache_lock:
        hit = _discovery_cache.get(issuer)
        if hit and now - hit[0] < settings.OIDC_DISCOVERY_TTL:
            return hit[1]
    url = discovery_url(issuer)
    try:
        response = httpx.get(url, timeout=settings.OIDC_HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OIDCError(
            f"cannot load the sign-in provider's configuration from {url}: {type(exc).__name__}",
            status=502,
        ) from None
    for key in ("issuer", "authorization_endpoint", "token_endpoint"):
        if not isinstance(document.get(key), str):
            raise OIDCError(f"the provider's discovery document has no {key}", status=502)
    with _cache_lock:
        _discovery_cache[issuer] = (now, document)
    return document


def exchange_code(document: dict[str, Any], code: str) -> dict[str, Any]:
    """POST the code to the token endpoint (client_secret_post); return the JSON."""
    try:
        response = httpx.post(
            document["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": settings.GOOGLE_REDIRECT_URI,
                "client_id": settings.GOOGLE_CLIENT_ID,
                "client_secret": settings.GOOGLE_CLIENT_SECRET,
            },
            headers={"Accept": "application/json"},
            timeout=settings.OIDC_HTTP_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise OIDCError(
            f"cannot reach the sign-in provider's token endpoint: {type(exc).__name__}",
            status=502,
        ) from None
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200:
        reason = payload.get("error", f"HTTP {response.status_code}") if payload else ""
        raise OIDCError(
            f"the sign-in provider rejected the authorization code ({reason or 'no reason'})"
        )
    if not isinstance(payload, dict) or not isinstance(payload.get("id_token"), str):
        raise OIDCError("the sign-in provider's token response has no id_token", status=502)
    return payload


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode_id_token(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS, after checking the algorithm/signature policy."""
    try:
        header_b64, claims_b64, signature_b64 = id_token.split(".")
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(claims_b64))
        signature = _b64decode(signature_b64)
    except (ValueError, TypeError):
        raise OIDCError("the ID token is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OIDCError("the ID token is malformed")
    alg = header.get("alg")
    if alg == "HS256":
        expected = hmac.new(
            settings.GOOGLE_CLIENT_SECRET.encode(),
            f"{header_b64}.{claims_b64}".encode(),
            hashlib.sha256,
        ).digest()
        if not hmac.compare_digest(expected, signature):
            raise OIDCError("the ID token signature is invalid")
    elif alg not in ("RS256", "ES256"):
        # Received straight from the token endpoint over TLS (Google's documented
        # exception); "none" and unknown algorithms are never accepted.
        raise OIDCError(f"the ID token uses an unsupported algorithm ({alg!r})")
    return header, claims


def validate_claims(claims: dict[str, Any], issuer: str, nonce: str) -> dict[str, Any]:
    accepted = {issuer.rstrip("/")}
    if issuer.rstrip("/") in GOOGLE_ISSUERS:
        accepted |= GOOGLE_ISSUERS
    if str(claims.get("iss", "")).rstrip("/") not in accepted:
        raise OIDCError("the ID token was issued by an unexpected issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if settings.GOOGLE_CLIENT_ID not in audiences:
        raise OIDCError("the ID token is not meant for this application (aud)")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != settings.GOOGLE_CLIENT_ID:
        raise OIDCError("the ID token is not meant for this application (azp)")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + CLOCK_SKEW < time.time():
        raise OIDCError("the ID token has expired; please sign in again")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce, nonce):
        raise OIDCError("the ID token does not belong to this sign-in attempt (nonce)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise OIDCError("the ID token has no subject")
    return claims
