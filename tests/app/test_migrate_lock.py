"""manage.py migrate waits for another host's migration lock, but not for ever."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.app.support import Postgres


def test_migrate_gives_up_on_a_held_lock(
    django_app: dict[str, str], postgres: Postgres, database: str
) -> None:
    from core.management.commands.migrate import LOCK_ID
    from django.core.management import CommandError, call_command

    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            call_command("migrate", verbosity=0, interactive=False, lock_timeout=1)
            outcome.append(None)
        except BaseException as exc:  # reported by the test below
            outcome.append(exc)
        finally:
            from django.db import connection

            connection.close()

    # another host's migrate, stuck while holding the lock (advisory locks are per database)
    with psycopg.connect(postgres.dsn(database), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_ID])
        started = time.monotonic()
        worker = threading.Thread(target=migrate, daemon=True)
        worker.start()
        worker.join(timeout=20)
        waited = time.monotonic() - started
        finished = not worker.is_alive()
    worker.join(timeout=20)  # without a deadline it ends only now, the lock released
    assert finished, "migrate waited for the lock with no end"
    assert isinstance(outcome[0], CommandError) and "migration lock" in str(outcome[0])
    assert 1 <= waited < 10
    # with the lock free, migrate runs (and takes and releases it itself)
    call_command("migrate", verbosity=0, interactive=False, lock_timeout=1)


@pytest.mark.parametrize("value", ["2.5"])
def test_the_lock_timeout_comes_from_the_environment(
    django_app: dict[str, str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from core.management.commands.migrate import LOCK_TIMEOUT_VAR, Command

    monkeypatch.setenv(LOCK_TIMEOUT_VAR, value)
    parser = Command().create_parser("manage.py", "migrate")
    assert parser.parse_args([]).lock_timeout == float(value)
