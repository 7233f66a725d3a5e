"""`migrate`, serialized across hosts with a PostgreSQL advisory lock.

Every app container runs `manage.py migrate --noinput` at start (app/start.sh);
during a rolling deploy several hosts start at once. Django's migrate is not
safe to run concurrently, so the real command runs under a session-level
advisory lock: the second host waits, then finds nothing to apply.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

LOCK_ID = 0x6A6F6274  # "jobt"


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " (serialized with a PostgreSQL advisory lock)"

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_ID])
        try:
            return super().handle(*args, **options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])
