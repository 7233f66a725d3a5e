"""Reading settings from the process environment (and nothing else).

On EC2 and in the replica the environment is filled from SSM Parameter Store by
`python -m jobtory_stack.ssm_env --exec -- app/start.sh`; locally you export the
same names yourself. Names and meaning: docs/architecture.md.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

#: Variables the app cannot run without. A missing or empty one stops the process
#: at settings import with an ImproperlyConfigured naming it.
REQUIRED = (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "FRONTEND_BASE_URL",
    "GOOGLE_REDIRECT_URI",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "DB_HOST",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
)

#: Set only while building an image (`collectstatic` needs settings but has no
#: SSM access). Placeholders fill the required variables; wsgi.py refuses to
#: serve and /readyz answers 503 in this mode.
BUILD_ONLY_VAR = "DJANGO_BUILD_ONLY"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def build_only() -> bool:
    return os.environ.get(BUILD_ONLY_VAR, "").strip().lower() in _TRUE


_PLACEHOLDERS = {
    "DJANGO_SECRET_KEY": "build-only-placeholder-" + "x" * 40,
    "DJANGO_ALLOWED_HOSTS": "localhost",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://localhost",
    "FRONTEND_BASE_URL": "https://localhost",
    "GOOGLE_REDIRECT_URI": "https://localhost/auth/google/callback",
    "GOOGLE_CLIENT_ID": "build-only",
    "GOOGLE_CLIENT_SECRET": "build-only",
    "DB_HOST": "localhost",
    "DB_NAME": "build-only",
    "DB_USER": "build-only",
    "DB_PASSWORD": "build-only",
}


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if build_only() and name in _PLACEHOLDERS:
        return _PLACEHOLDERS[name]
    raise ImproperlyConfigured(
        f"Environment variable {name} is required but is not set (or empty). "
        "In containers and on EC2 it comes from SSM Parameter Store "
        "(python -m jobtory_stack.ssm_env --exec -- app/start.sh); see docs/architecture.md."
    )


def optional(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def boolean(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"Environment variable {name} must be true/false, got {raw!r}")


def integer(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"Environment variable {name} must be an integer, got {raw!r}"
        ) from None


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def url(name: str, value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Validate an absolute URL (scheme + host), return it without a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ImproperlyConfigured(
            f"Environment variable {name} must be an absolute {'/'.join(schemes)} URL, "
            f"got {value!r}"
        )
    return value.rstrip("/")


def origins(name: str, value: str) -> list[str]:
    """CSRF_TRUSTED_ORIGINS entries must carry a scheme (Django 4+)."""
    items = comma_list(value)
    for item in items:
        if "://" not in item:
            raise ImproperlyConfigured(
                f"Environment variable {name}: origin {item!r} needs a scheme, e.g. https://{item}"
            )
    return items
