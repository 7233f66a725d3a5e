"""The environment contract: every variable in docs/architecture.md is read by the
settings, and /readyz reports configuration that cannot serve."""

from __future__ import annotations

import re

from django.test import Client, override_settings

from tests.helpers import ROOT


def contract_variables() -> set[str]:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## The app's environment", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_settings_read_every_contract_variable() -> None:
    names = contract_variables()
    assert {"DJANGO_SECRET_KEY", "GOOGLE_REDIRECT_URI", "DB_PASSWORD", "APP_VERSION"} <= names
    source = (ROOT / "app" / "config" / "settings.py").read_text()
    unread = sorted(name for name in names if f'"{name}"' not in source)
    assert unread == []


def test_settings_values_come_from_the_environment(django_app: dict[str, str]) -> None:
    from django.conf import settings

    assert settings.TIME_ZONE == "Asia/Seoul" and settings.USE_TZ is True
    assert settings.DEBUG is False
    assert django_app["DJANGO_ALLOWED_HOSTS"].split(",") == settings.ALLOWED_HOSTS
    assert django_app["GOOGLE_REDIRECT_URI"] == settings.GOOGLE_REDIRECT_URI
    assert django_app["VITE_API_BASE"] == settings.VITE_API_BASE
    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["PORT"] == int(django_app["DB_PORT"])
    assert db["CONN_MAX_AGE"] > 0 and db["CONN_HEALTH_CHECKS"] is True
    assert settings.MIDDLEWARE[0] == "core.middleware.HealthCheckMiddleware"


def test_readyz_names_missing_configuration(django_app: dict[str, str]) -> None:
    with override_settings(GOOGLE_CLIENT_ID=""):
        response = Client(HTTP_HOST="10.0.3.7").get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["missing configuration: GOOGLE_CLIENT_ID"]


def test_database_time_zone_is_utc_on_the_wire(django_app: dict[str, str]) -> None:
    """USE_TZ: Django stores aware datetimes; the connection time zone is UTC."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW TIME ZONE")
        assert cursor.fetchone()[0] == "UTC"
