"""scripts/restore's steps (replica/restore.py) against a real PostgreSQL (the replica's db
image): one transaction for the renames, the previous database kept until the restored one
is verified, and database names at PostgreSQL's 63-byte limit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from replica.restore import Db, RestoreError, restore, temporary_names, verify
from tests.app.support import Postgres

OWNER = "restore_owner"


@pytest.fixture
def db(postgres: Postgres) -> Db:
    exec_prefix = ["docker", "exec", "-i", "-u", "postgres", "-e", f"PGPORT={postgres.port}"]
    db = Db([*exec_prefix, postgres.container])
    if not db.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{OWNER}'"):
        db.sql(f"CREATE ROLE {OWNER} LOGIN")
    return db


def rows(postgres: Postgres, database: str) -> list[str]:
    with psycopg.connect(postgres.dsn(database)) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v").fetchall()]


def make_db(db: Db, name: str, value: str) -> None:
    db.sql(f'CREATE DATABASE "{name}" OWNER {OWNER}')
    db.sql(f"CREATE TABLE t (v text); INSERT INTO t VALUES ('{value}')", name)


def leftovers(db: Db) -> list[str]:
    return db.sql("SELECT datname FROM pg_database WHERE datname LIKE 'restore\\_%'").split()


@pytest.fixture
def current(db: Db) -> Iterator[str]:
    """A live database named at the 63-byte limit, holding 'previous'."""
    name = ("live_" + os.urandom(4).hex()).ljust(63, "x")
    make_db(db, name, "previous")
    yield name
    for stale in [name, *leftovers(db)]:
        db.sql(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')


@pytest.fixture
def dump(db: Db, postgres: Postgres) -> bytes:
    """A pg_dump -Fc (scripts/backup's format) of a database holding 'restored'."""
    source = "dump_" + os.urandom(4).hex()
    make_db(db, source, "restored")
    out = subprocess.run(
        [*db.exec_prefix, "pg_dump", "--format=custom", "--no-owner", "--no-acl", source],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    db.sql(f'DROP DATABASE "{source}"')
    return out.stdout


def test_temporary_names_never_collide_with_a_long_name() -> None:
    """`<name>_restoring` is truncated to `<name>` at 63 bytes: DROP IF EXISTS of the
    temporary name dropped the live database. The temporary names are fixed-length."""
    name = "a" * 63
    new, old = temporary_names(name)
    assert len({name[:63], new[:63], old[:63]}) == 3
    assert len(new) < 63 and len(old) < 63


def test_a_restore_swaps_in_and_drops_the_previous(
    db: Db, postgres: Postgres, current: str, dump: bytes
) -> None:
    restore(db, current, OWNER, dump, log=lambda _: None)
    assert rows(postgres, current) == ["restored"]
    assert leftovers(db) == []
    owner = db.sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{current}'")
    assert owner.strip() == OWNER


def test_a_failed_swap_changes_nothing(
    db: Db, postgres: Postgres, current: str, dump: bytes
) -> None:
    """The second rename fails (someone holds the new database open): the first one is
    rolled back with it, so the live name never points at nothing."""
    held: list[psycopg.Connection] = []

    def hold(new: str) -> None:
        held.append(psycopg.connect(postgres.dsn(new)))

    with pytest.raises(RestoreError, match="is untouched"):
        restore(db, current, OWNER, dump, log=lambda _: None, before_swap=hold)
    for conn in held:
        conn.close()
    assert rows(postgres, current) == ["previous"]  # and it takes connections again
    assert leftovers(db) == []


def test_the_previous_database_is_kept_until_the_restore_is_verified(
    db: Db, postgres: Postgres, current: str, dump: bytes
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def check(db: Db, name: str, expected: set[str]) -> str | None:
        seen.append((name, leftovers(db)))
        if name == current:  # under its real name: this restore does not pass
            return "the restored database does not answer"
        return verify(db, name, expected)

    with pytest.raises(RestoreError, match="is the previous database again"):
        restore(db, current, OWNER, dump, log=lambda _: None, check=check)
    # checked before the swap, then under its name while the previous one still existed
    assert [name for name, _ in seen][1] == current
    assert any(d.endswith("_old") for d in seen[1][1])
    assert rows(postgres, current) == ["previous"]
    kept = leftovers(db)
    assert len(kept) == 1 and kept[0].endswith("_new")
    assert rows(postgres, kept[0]) == ["restored"]
