"""Health endpoints that answer before host validation.

Load balancer health checks (ALB target groups) send the target's private IP as
Host, over plain HTTP. Django would answer 400 (DisallowedHost) or redirect to
HTTPS. This middleware sits FIRST in MIDDLEWARE and answers exactly /healthz and
/readyz without ever calling request.get_host(), so ALLOWED_HOSTS stays strict
for every other path.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core import health

HEALTH_PATHS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": health.healthz,
    "/healthz/": health.healthz,
    "/readyz": health.readyz,
    "/readyz/": health.readyz,
}


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        handler = HEALTH_PATHS.get(request.path_info)
        if handler is not None and request.method in ("GET", "HEAD"):
            response = handler(request)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
