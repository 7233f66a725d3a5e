"""`migrate`, serialized across hosts with a PostgreSQL advisory lock, with a deadline.

Every app container runs `manage.py migrate --noinput` at start (app/start.sh);
during a rolling deploy several hosts start at once. Django's migrate is not
safe to run concurrently, so the real command runs under a session-level
advisory lock: the second host waits, then finds nothing to apply.

Under the lock and before anything is applied, the pending migrations are checked for
steps the release still serving cannot tolerate (core/migration_safety.py: expand/contract).

The wait is bounded (`--lock-timeout`, default DB_MIGRATE_LOCK_TIMEOUT or 300 s): a
migrate that hangs on another host (or a forgotten session holding the lock) fails this
one with a message naming the lock, instead of blocking a deploy for ever.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from core.migration_safety import pending_problems, refusal

LOCK_ID = 0x6A6F6274  # "jobt"
LOCK_TIMEOUT_VAR = "DB_MIGRATE_LOCK_TIMEOUT"
LOCK_TIMEOUT_DEFAULT = 300.0  # seconds: longer than any migration this app should need
LOCK_POLL = 0.5  # seconds between tries


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " (serialized with a PostgreSQL advisory lock)"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=float(os.environ.get(LOCK_TIMEOUT_VAR) or LOCK_TIMEOUT_DEFAULT),
            help=f"seconds to wait for another migrate's lock (default ${LOCK_TIMEOUT_VAR} "
            f"or {LOCK_TIMEOUT_DEFAULT:.0f})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        self.acquire(connection, options["lock_timeout"])
        try:
            # before anything is applied: what the release still serving cannot tolerate
            # (expand/contract). A named target (a rollback, a fix by hand) is the operator's.
            if not options["app_label"] and (problems := pending_problems(connection)):
                raise CommandError(refusal(problems))
            return super().handle(*args, **options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])

    def acquire(self, connection: Any, timeout: float) -> None:
        """pg_try_advisory_lock until the deadline: never a wait without an end."""
        deadline = time.monotonic() + timeout
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_ID])
                if cursor.fetchone()[0]:
                    return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"another migrate has held the migration lock (advisory lock {LOCK_ID}) "
                    f"for more than {timeout:.0f} s; find its session with `SELECT pid FROM "
                    f"pg_locks WHERE locktype = 'advisory' AND objid = {LOCK_ID}`, let it "
                    f"finish or end it, then run again (--lock-timeout / {LOCK_TIMEOUT_VAR})"
                )
            time.sleep(LOCK_POLL)
