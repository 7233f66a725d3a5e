"""Small JSON endpoints: version, request-info, csrf, me, and JSON error handlers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from core import health
from core.http import error

# Routed only so reverse() knows them; the middleware answers first.
healthz = health.healthz
readyz = health.readyz


@require_GET
def version(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"version": settings.APP_VERSION})


def client_ip(request: HttpRequest) -> str:
    """The real client address.

    Caddy is the only proxy in front of gunicorn and always OVERWRITES X-Real-IP
    with its computed {client_ip} (which honours its trusted_proxies, e.g. the
    ALB's VPC range), so the header cannot be spoofed by clients. Without Caddy
    (a direct connection) REMOTE_ADDR is the client.
    """
    real_ip = request.META.get("HTTP_X_REAL_IP", "").strip()
    return real_ip or request.META.get("REMOTE_ADDR", "")


@require_GET
def request_info(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "scheme": request.scheme,
            "is_secure": request.is_secure(),
            "host": request.get_host(),
            "client_ip": client_ip(request),
            "remote_addr": request.META.get("REMOTE_ADDR", ""),
            "forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR", ""),
            "forwarded_proto": request.META.get("HTTP_X_FORWARDED_PROTO", ""),
        }
    )


@require_GET
@ensure_csrf_cookie
def csrf(request: HttpRequest) -> HttpResponse:
    """Set the csrftoken cookie and return the token (send it as X-CSRFToken)."""
    return JsonResponse({"csrfToken": get_token(request)})


def user_json(user: Any) -> dict[str, Any]:
    return {
        "id": user.pk,
        "sub": user.google_sub,
        "email": user.email,
        "name": user.name,
        "is_staff": user.is_staff,
    }


@require_GET
def me(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return error(401, "not signed in")
    return JsonResponse(user_json(request.user))


# --- JSON error pages ----------------------------------------------------------


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error(403, f"CSRF check failed: {reason}")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error(400, "bad request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error(403, "forbidden")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error(404, "not found")


def server_error(request: HttpRequest) -> HttpResponse:
    return error(500, "internal server error")
