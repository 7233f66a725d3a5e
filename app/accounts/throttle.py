"""Password sign-in at /admin/login/ is throttled (brute force, credential stuffing).

Users sign in with Google; only staff accounts made with `createsuperuser` have a
password, and /admin/ is on the public domain. Failures are counted per client
address and per username over a sliding window (settings.ADMIN_LOGIN_*): past the
limit the login answers 429 with Retry-After, before any password is checked, so
guessing goes no faster than the limit. Per username as well as per address, because
an attacker has many addresses; the price is that someone can lock an admin's
password sign-in for one window (`manage.py` on a host still works).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from core.http import error
from core.views import client_ip
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone

from accounts.models import LoginFailure

log = logging.getLogger(__name__)


def _window() -> timedelta:
    return timedelta(seconds=settings.ADMIN_LOGIN_WINDOW_SECONDS)


def retry_after(ip: str, username: str) -> int | None:
    """Seconds until this address and username may try again, or None when they may now."""
    since = timezone.now() - _window()
    recent = LoginFailure.objects.filter(at__gte=since).order_by("-at")
    waits = []
    for failures, limit in (
        (recent.filter(ip=ip), settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP),
        (recent.filter(username=username), settings.ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME),
    ):
        # The lock lifts when the limit-th most recent failure leaves the window.
        times = list(failures.values_list("at", flat=True)[:limit])
        if len(times) >= limit:
            waits.append((times[-1] + _window() - timezone.now()).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else None


def record_failure(ip: str, username: str) -> None:
    LoginFailure.objects.filter(at__lt=timezone.now() - _window()).delete()
    LoginFailure.objects.create(ip=ip[:45], username=username)


def throttled(login_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap the admin's login view: refuse while locked, count each failed POST."""

    @wraps(login_view)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return login_view(request, *args, **kwargs)
        ip = client_ip(request)
        username = str(request.POST.get("username", "")).strip()[:255]
        wait = retry_after(ip, username)
        if wait is not None:
            log.warning("admin sign-in throttled for %s (%d s)", ip, wait)
            response = error(429, f"too many failed sign-ins; try again in {wait} s")
            response["Retry-After"] = str(wait)
            return response
        response = login_view(request, *args, **kwargs)
        # The admin's login answers a POST with a redirect only when it signed someone
        # in (a session that was signed in before, e.g. with Google, proves nothing).
        if isinstance(response, HttpResponseRedirect):
            LoginFailure.objects.filter(username=username).delete()
        else:
            record_failure(ip, username)
        return response

    return view
