"""Talking to the sign-in provider: the error every step raises, and JSON GETs."""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings


class OIDCError(Exception):
    """The sign-in cannot continue; the message is safe to show the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def get_json(url: str, what: str) -> dict[str, Any]:
    """GET `url` as a JSON object; OIDCError (502) naming `what` otherwise."""
    try:
        response = httpx.get(url, timeout=settings.OIDC_HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OIDCError(
            f"cannot load the sign-in provider's {what} from {url}: {type(exc).__name__}",
            status=502,
        ) from None
    if not isinstance(document, dict):
        raise OIDCError(f"the sign-in provider's {what} is not a JSON object", status=502)
    return document
