"""/healthz (the process is up) and /readyz (database + configuration)."""

from __future__ import annotations

import logging

from config import env
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def _configured() -> dict[str, object]:
    """The values the required variables became, by variable name."""
    db = settings.DATABASES["default"]
    return {
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
        "DJANGO_CSRF_TRUSTED_ORIGINS": settings.CSRF_TRUSTED_ORIGINS,
        "FRONTEND_BASE_URL": settings.FRONTEND_BASE_URL,
        "GOOGLE_REDIRECT_URI": settings.GOOGLE_REDIRECT_URI,
        "GOOGLE_CLIENT_ID": settings.GOOGLE_CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": settings.GOOGLE_CLIENT_SECRET,
        "DB_HOST": db.get("HOST"),
        "DB_NAME": db.get("NAME"),
        "DB_USER": db.get("USER"),
        "DB_PASSWORD": db.get("PASSWORD"),
    }


def config_problems() -> list[str]:
    """What keeps this process from serving: placeholders or empty required settings."""
    problems = []
    if settings.BUILD_ONLY:
        problems.append(f"{env.BUILD_ONLY_VAR} is set (image-build placeholders)")
    missing = [name for name, value in _configured().items() if not value]
    if missing:
        problems.append("missing configuration: " + ", ".join(missing))
    return problems


def database_problem() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # Details (host, port) go to the log, not to the public response.
        log.warning("readyz: database check failed: %s", exc)
        # Drop the broken connection now instead of on the next request.
        connection.close_if_unusable_or_obsolete()
        return f"database unreachable ({type(exc).__name__})"
    return None


def readyz(request: HttpRequest) -> HttpResponse:
    reasons = config_problems()
    if not settings.BUILD_ONLY:
        db = database_problem()
        if db:
            reasons.append(db)
    if reasons:
        return JsonResponse({"status": "unavailable", "reasons": reasons}, status=503)
    return JsonResponse({"status": "ready", "version": settings.APP_VERSION})
