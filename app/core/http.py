"""Small JSON helpers for the plain-Django API."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse


class BadRequest(Exception):
    """Raised by a view to answer 400 with a JSON body."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def validation_error(fields: dict[str, list[str]]) -> JsonResponse:
    names = ", ".join(sorted(fields))
    return JsonResponse(
        {"error": f"invalid fields: {names}", "fields": fields},
        status=400,
    )


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise BadRequest("request body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


View = Callable[..., HttpResponse]


def api_view(methods: tuple[str, ...], write_requires_login: bool = True) -> Callable[[View], View]:
    """Allow only `methods`; writes need a logged-in session (401 JSON otherwise).

    CSRF is enforced by CsrfViewMiddleware as usual (X-CSRFToken header + cookie).
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"method {request.method} not allowed")
                response["Allow"] = ", ".join(methods)
                return response
            unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
            if unsafe and write_requires_login and not request.user.is_authenticated:
                return error(401, "authentication required: sign in first")
            try:
                return view(request, *args, **kwargs)
            except BadRequest as exc:
                if exc.fields:
                    return validation_error(exc.fields)
                return error(400, exc.message)

        return wrapper

    return decorate
