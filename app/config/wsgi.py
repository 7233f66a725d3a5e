"""WSGI entry point: gunicorn config.wsgi:application (run from app/)."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config import env

if env.build_only():
    raise ImproperlyConfigured(
        f"{env.BUILD_ONLY_VAR} is set: placeholder settings are for image builds "
        "(collectstatic) only and cannot serve requests."
    )

application = get_wsgi_application()
