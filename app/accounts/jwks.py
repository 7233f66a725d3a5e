"""The provider's signing keys (its JWKS, at the discovery's jwks_uri) and RS256 checks.

Only RS256 is accepted, the algorithm Google signs ID tokens with. HS256 would make the
client secret a signing key (whoever holds it could mint tokens), "none" is no
signature at all, and an algorithm picked by the token itself is the classic JWT
confusion attack: all are refused before any key is looked at.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from accounts.provider import OIDCError, get_json

ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
# A kid we do not know refetches the set (the provider rotated its keys), at most this
# often, so forged kids cannot make us hammer the provider.
REFETCH_AFTER = 60  # seconds

_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, rsa.RSAPublicKey]]] = {}


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _public_key(jwk: Any) -> rsa.RSAPublicKey | None:
    """The RSA key of a JWK usable for RS256 signatures, or None (skipped)."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    try:
        n = int.from_bytes(b64decode(jwk["n"]), "big")
        e = int.from_bytes(b64decode(jwk["e"]), "big")
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, TypeError, ValueError):
        return None
    return key if key.key_size >= MIN_KEY_BITS else None


def _fetch(jwks_uri: str) -> dict[str, rsa.RSAPublicKey]:
    """kid -> key for every usable key of the set ("" for a key without a kid)."""
    keys = get_json(jwks_uri, "signing keys (JWKS)").get("keys")
    found: dict[str, rsa.RSAPublicKey] = {}
    for jwk in keys if isinstance(keys, list) else []:
        key = _public_key(jwk)
        if key is not None:
            found[str(jwk.get("kid", ""))] = key
    return found


def _pick(keys: dict[str, rsa.RSAPublicKey], kid: str | None) -> rsa.RSAPublicKey | None:
    if kid is not None:
        return keys.get(kid)
    # No kid in the token: only unambiguous with a single key.
    return next(iter(keys.values())) if len(keys) == 1 else None


def signing_key(jwks_uri: str, kid: str | None) -> rsa.RSAPublicKey:
    """The provider's key for `kid`, from the cached set (refetched when stale or when
    a kid is unknown, see REFETCH_AFTER)."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(jwks_uri)
    if hit is None or now - hit[0] >= settings.OIDC_DISCOVERY_TTL:
        hit = (now, _fetch(jwks_uri))
    key = _pick(hit[1], kid)
    if key is None and now - hit[0] >= REFETCH_AFTER:
        hit = (now, _fetch(jwks_uri))
        key = _pick(hit[1], kid)
    with _lock:
        _cache[jwks_uri] = hit
    if key is None:
        raise OIDCError("the ID token's signing key (kid) is not among the provider's keys")
    return key


def verify(key: rsa.RSAPublicKey, signing_input: bytes, signature: bytes) -> None:
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise OIDCError("the ID token signature is invalid") from None
