"""/admin/login/ is throttled: failures per client address and per username, in the
database (every worker and host counts together), 429 with Retry-After past the limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings

from tests.app.support import HOST, make_user

PASSWORD = "a-long-admin-password-7f3k"
LIMITS = {"ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME": 3, "ADMIN_LOGIN_MAX_FAILURES_PER_IP": 5}


def from_ip(ip: str) -> Client:
    return Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https", HTTP_X_REAL_IP=ip)


def log_in(client: Client, username: str, password: str) -> Any:
    return client.post("/admin/login/", {"username": username, "password": password})


@pytest.fixture
def admin_user(django_app: dict[str, str]) -> Iterator[Any]:
    from accounts.models import LoginFailure

    LoginFailure.objects.all().delete()
    user = make_user("admin-sub", "admin@example.test")
    user.is_staff = user.is_superuser = True
    user.set_password(PASSWORD)
    user.save()
    with override_settings(**LIMITS):
        yield user
    LoginFailure.objects.all().delete()


def test_a_username_is_locked_after_its_failures_even_from_new_addresses(admin_user: Any) -> None:
    for i in range(3):
        response = log_in(from_ip(f"198.51.100.{i}"), "admin-sub", "guess")
        assert response.status_code == 200  # the form again, with its error
    # The right password is refused too while locked: guessing cannot go on.
    locked = log_in(from_ip("198.51.100.9"), "admin-sub", PASSWORD)
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert "too many failed sign-ins" in locked.json()["error"]
    # Another account is not locked by it.
    other = make_user("other-admin", "other@example.test")
    other.is_staff = True
    other.set_password(PASSWORD)
    other.save()
    assert log_in(from_ip("198.51.100.9"), "other-admin", PASSWORD).status_code == 302


def test_an_address_is_locked_after_its_failures_on_any_usernames(admin_user: Any) -> None:
    client = from_ip("203.0.113.50")
    for i in range(5):
        assert log_in(client, f"user-{i}", "guess").status_code == 200
    assert log_in(client, "admin-sub", PASSWORD).status_code == 429
    assert log_in(from_ip("203.0.113.51"), "admin-sub", PASSWORD).status_code == 302


def test_the_lock_lifts_when_the_window_has_passed(admin_user: Any) -> None:
    from accounts.models import LoginFailure
    from django.utils import timezone

    client = from_ip("192.0.2.10")
    for _ in range(3):
        log_in(client, "admin-sub", "guess")
    assert log_in(client, "admin-sub", PASSWORD).status_code == 429
    LoginFailure.objects.update(at=timezone.now() - timedelta(minutes=16))
    assert log_in(client, "admin-sub", PASSWORD).status_code == 302
    assert not LoginFailure.objects.filter(username="admin-sub").exists()  # cleared


def test_a_session_signed_in_with_google_does_not_reset_the_count(admin_user: Any) -> None:
    client = from_ip("192.0.2.20")
    client.force_login(make_user("google-user", "g@example.test"))
    for _ in range(3):
        assert log_in(client, "admin-sub", "guess").status_code == 200
    assert log_in(client, "admin-sub", PASSWORD).status_code == 429


def test_the_limits_cannot_be_switched_off_from_the_environment() -> None:
    from tests.helpers import ROOT

    source = (ROOT / "app" / "config" / "settings.py").read_text()
    block = source.split("ADMIN_LOGIN_WINDOW_SECONDS", 1)[1].split("\n\n", 1)[0]
    assert "env." not in block
