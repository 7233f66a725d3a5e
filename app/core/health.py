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


def config_problems() -> list[str]:
    problems = []
    if settings.BUILD_ONLY:
        problems.append(f"{env.BUILD_ONLY_VAR} is set (image-build placeholders)")
    missing = env.missing_required()
    if missing:
        problems.append("missing environment variables: " + ", ".join(missing))
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
