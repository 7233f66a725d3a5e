"""Google sign-in: the OpenID Connect authorization code flow, server side.

Discovery comes from GOOGLE_OIDC_ISSUER + '/.well-known/openid-configuration'
(cached). The ID token comes from the token endpoint in exchange for the code and
client secret; its RS256 signature is still verified against the provider's JWKS
(accounts/jwks.py), so a compromised path to the token endpoint cannot hand us a
user. HS256, "none" and every other alg are refused. Then iss, aud, exp and nonce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from accounts import jwks
from accounts.provider import OIDCError, get_json

#: Google documents both spellings of its issuer.
GOOGLE_ISSUERS = {"https://accounts.google.com", "accounts.google.com"}
CLOCK_SKEW = 60  # seconds


_cache_lock = threading.Lock()
_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def clear_cache() -> None:
    with _cache_lock:
        _discovery_cache.clear()
    jwks.clear_cache()


#: Every URL of the discovery document the app calls or sends a browser to.
ENDPOINTS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")


def require_https(name: str, url: str) -> None:
    """Outside `local` (settings.OIDC_REQUIRE_HTTPS) every OIDC URL is https: the keys,
    the tokens and the client secret travel over them."""
    if settings.OIDC_REQUIRE_HTTPS and urlsplit(url).scheme != "https":
        raise OIDCError(
            f"the sign-in provider's {name} must be https outside the local replica: {url!r}",
            status=502,
        )


def discover(issuer: str | None = None) -> dict[str, Any]:
    """The provider's discovery document, cached for OIDC_DISCOVERY_TTL seconds."""
    issuer = (issuer or settings.GOOGLE_OIDC_ISSUER).rstrip("/")
    require_https("issuer (GOOGLE_OIDC_ISSUER)", issuer)  # before anything is fetched
    now = time.monotonic()
    with _cache_lock:
        hit = _discovery_cache.get(issuer)
        if hit and now - hit[0] < settings.OIDC_DISCOVERY_TTL:
            return hit[1]
    document = get_json(discovery_url(issuer), "configuration")
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str):
            raise OIDCError(f"the provider's discovery document has no {key}", status=502)
    # OIDC Discovery §4.3: the document must name the issuer we asked, or whoever
    # answers at that URL could speak for another provider (its tokens, its keys).
    # A trailing slash is not a different issuer.
    if document["issuer"].rstrip("/") != issuer:
        raise OIDCError(
            f"the provider's discovery document names the issuer {document['issuer']!r}, "
            f"not the configured GOOGLE_OIDC_ISSUER {issuer!r}",
            status=502,
        )
    for key in ENDPOINTS:
        if key in document:
            require_https(key, str(document[key]))
    with _cache_lock:
        _discovery_cache[issuer] = (now, document)
    return document


def pkce_challenge(verifier: str) -> str:
    """The S256 code_challenge of a PKCE code_verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def exchange_code(document: dict[str, Any], code: str, code_verifier: str) -> dict[str, Any]:
    """POST the code and its PKCE verifier to the token endpoint (client_secret_post);
    return the JSON."""
    try:
        response = httpx.post(
            document["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": settings.GOOGLE_REDIRECT_URI,
                "client_id": settings.GOOGLE_CLIENT_ID,
                "client_secret": settings.GOOGLE_CLIENT_SECRET,
                "code_verifier": code_verifier,
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


def decode_id_token(id_token: str, jwks_uri: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS whose RS256 signature the provider's key verifies."""
    try:
        header_b64, claims_b64, signature_b64 = id_token.split(".")
        header = json.loads(jwks.b64decode(header_b64))
        claims = json.loads(jwks.b64decode(claims_b64))
        signature = jwks.b64decode(signature_b64)
    except (ValueError, TypeError):
        raise OIDCError("the ID token is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OIDCError("the ID token is malformed")
    alg = header.get("alg")
    if alg != jwks.ALGORITHM:  # checked before any key: the token does not choose
        raise OIDCError(f"the ID token uses an unsupported algorithm ({alg!r}); only RS256")
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not know must be refused
        raise OIDCError("the ID token has critical header extensions")
    kid = header.get("kid")
    key = jwks.signing_key(jwks_uri, kid if isinstance(kid, str) else None)
    jwks.verify(key, f"{header_b64}.{claims_b64}".encode(), signature)
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
