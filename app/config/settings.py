"""Settings for the jobtory reference app: read ONLY from the process environment.

Required variables (see config/env.py REQUIRED and docs/architecture.md) stop the
process with ImproperlyConfigured naming the variable when missing.
"""

from __future__ import annotations

from pathlib import Path

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent

# --- core --------------------------------------------------------------------

SECRET_KEY = env.required("DJANGO_SECRET_KEY")
DEBUG = env.boolean("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.comma_list(env.required("DJANGO_ALLOWED_HOSTS"))
CSRF_TRUSTED_ORIGINS = env.origins(
    "DJANGO_CSRF_TRUSTED_ORIGINS", env.required("DJANGO_CSRF_TRUSTED_ORIGINS")
)
BUILD_ONLY = env.build_only()

FRONTEND_BASE_URL = env.url("FRONTEND_BASE_URL", env.required("FRONTEND_BASE_URL"))
VITE_API_BASE = env.optional("VITE_API_BASE", FRONTEND_BASE_URL + "/api")
APP_VERSION = env.optional("APP_VERSION", "dev")

# --- Google sign-in (OIDC authorization code flow) ---------------------------

GOOGLE_CLIENT_ID = env.required("GOOGLE_CLIENT_ID")
GOOGLE_CLIENT_SECRET = env.required("GOOGLE_CLIENT_SECRET")
# Sent to the provider exactly as configured (it must match the registered URI).
GOOGLE_REDIRECT_URI = env.required("GOOGLE_REDIRECT_URI")
env.url("GOOGLE_REDIRECT_URI", GOOGLE_REDIRECT_URI)
GOOGLE_OIDC_ISSUER = env.url(
    "GOOGLE_OIDC_ISSUER", env.optional("GOOGLE_OIDC_ISSUER", "https://accounts.google.com")
)
# The stack environment (derived from the spec's env name). Only `local`, the replica
# with its fake provider on http://oidc:9400, may use plain http for the OIDC
# endpoints; unset means a real environment: https everywhere.
JOBTORY_ENV = env.optional("JOBTORY_ENV", "")
OIDC_REQUIRE_HTTPS = JOBTORY_ENV != "local"
OIDC_HTTP_TIMEOUT = 10.0
OIDC_DISCOVERY_TTL = 3600

# --- /admin/ password sign-in: throttled (accounts/throttle.py) ---------------
# Fixed here, not read from the environment: nothing in SSM can switch them off.
ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60
ADMIN_LOGIN_MAX_FAILURES_PER_IP = 20
ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME = 5

# --- applications ------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "core",
    "accounts",
    "problems",
    "logs",
]

MIDDLEWARE = [
    # FIRST: /healthz and /readyz answer before host validation and before the
    # HTTPS redirect (load balancer health checks send the target IP as Host
    # over plain HTTP). ALLOWED_HOSTS stays strict for every other path.
    "core.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database: PostgreSQL only ------------------------------------------------

_db_options: dict[str, object] = {"connect_timeout": env.integer("DB_CONNECT_TIMEOUT", 5)}
# The spec derives verify-full and the CA bundle's path on the host (rds.ca_bundle):
# the server's certificate and name are checked, so a man in the middle cannot answer.
if env.optional("DB_SSLMODE", ""):
    _db_options["sslmode"] = env.optional("DB_SSLMODE", "")
if env.optional("DB_SSLROOTCERT", ""):
    _db_options["sslrootcert"] = env.optional("DB_SSLROOTCERT", "")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "HOST": env.required("DB_HOST"),
        "PORT": env.integer("DB_PORT", 5432),
        "NAME": env.required("DB_NAME"),
        "USER": env.required("DB_USER"),
        "PASSWORD": env.required("DB_PASSWORD"),
        # Persistent connections, checked before each request reuses them: after a
        # database restart/failover the dead connection is dropped and a new one is
        # opened by itself (no app restart).
        "CONN_MAX_AGE": env.integer("DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": _db_options,
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n / time --------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Asia/Seoul"
USE_I18N = True
USE_TZ = True

# --- static files (admin) served by whitenoise --------------------------------
# Collected at image build:
#   DJANGO_BUILD_ONLY=1 python app/manage.py collectstatic --noinput
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.optional("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- behind a TLS-terminating proxy (Caddy, optionally behind an ALB) ---------

# Caddy sets X-Forwarded-Proto (value "https", lowercase). gunicorn must only be
# reachable from Caddy, which overwrites the header for untrusted clients.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Health checks are plain HTTP (they are also short-circuited by HealthCheckMiddleware).
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$"]
SECURE_HSTS_SECONDS = env.integer("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Sending `preload` invites anyone to submit the domain to the browsers' preload
# list (hard to undo); that is the domain owner's deliberate decision.
SECURE_HSTS_PRELOAD = env.boolean("DJANGO_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
# Lax: the OIDC callback is a top-level GET navigation from the provider and
# must carry the session (state + nonce).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "core.views.csrf_failure"
X_FRAME_OPTIONS = "DENY"
USE_X_FORWARDED_HOST = False  # Caddy passes the original Host through

SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# --- logging: stdout, no request bodies or query strings ----------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["console"], "level": env.optional("DJANGO_LOG_LEVEL", "INFO")},
}
