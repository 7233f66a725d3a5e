"""Restore a scripts/backup dump (pg_dump -Fc) into the replica's database, atomically.

    python3 -m replica.restore --yes FILE        (what scripts/restore runs)

1. The dump goes into a NEW database under a temporary name; a failure there leaves the
   current database untouched.
2. Connections to the current database are refused and closed, then ONE transaction
   renames current -> previous and new -> current: either both renames happen or none.
3. The restored database is checked under its real name (it accepts connections and
   holds every table of the dump). Only then is the previous database dropped; a failed
   check swaps back, again in one transaction.

Temporary names are short and fixed-length (`restore_<hex>_new|_old`): a name near
PostgreSQL's 63-byte limit plus a suffix would be truncated back to the live name.
Everything runs through psql/pg_restore inside the db container as the OS user postgres
(peer auth): no password anywhere. Standard library only.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_EXEC = ("docker", "compose", "-f", str(ROOT / "compose" / "compose.yaml"), "exec", "-T")
NAME_MAX = 63  # PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated


class RestoreError(Exception):
    """A restore step failed; the message says what state the databases are in."""


def temporary_names(current: str, token: str | None = None) -> tuple[str, str]:
    """(new, previous): fixed length whatever `current` is, and never equal to it."""
    token = token or secrets.token_hex(6)
    new, old = f"restore_{token}_new", f"restore_{token}_old"
    if len(current.encode()) > NAME_MAX or current in (new, old):
        raise RestoreError(f"database name {current!r} cannot be restored into safely")
    return new, old


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Db:
    """psql and pg_restore in the db container, as the OS user postgres."""

    exec_prefix: Sequence[str]  # e.g. docker compose ... exec -T -u postgres db

    def run(self, tool: Sequence[str], stdin: bytes) -> str:
        proc = subprocess.run(
            [*self.exec_prefix, *tool], input=stdin, capture_output=True, check=False
        )
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise RestoreError(f"{tool[0]} failed: {tail[0]}")
        return proc.stdout.decode()

    def sql(self, sql: str, database: str = "postgres") -> str:
        psql = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database]
        return self.run(psql, f"SET client_min_messages = warning;\n{sql}".encode())

    def exists(self, name: str) -> bool:
        return self.sql(f"SELECT 1 FROM pg_database WHERE datname = {literal(name)}") != ""

    def tables(self, database: str) -> set[str]:
        rows = self.sql(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            database,
        )
        return set(rows.split())


def dump_tables(db: Db, dump: bytes) -> set[str]:
    """The tables a custom-format dump holds (pg_restore --list)."""
    listing = db.run(["pg_restore", "--list"], dump)
    return {
        f"{m.group(1)}.{m.group(2)}"
        for m in re.finditer(r"^\d+; \d+ \d+ TABLE (?!DATA )(\S+) (\S+) ", listing, re.MULTILINE)
    }


def close_connections(db: Db, name: str) -> None:
    """Refuse new connections to `name` (committed, so other sessions see it), end the rest."""
    db.sql(
        f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS false;\n"
        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
        f"WHERE datname = {literal(name)} AND pid <> pg_backend_pid();"
    )


def swap(db: Db, current: str, new: str, old: str) -> None:
    """current -> old and new -> current in one transaction; `current` takes connections
    again whatever happens."""
    close_connections(db, current)
    try:
        db.sql(
            "BEGIN;\n"
            f"ALTER DATABASE {ident(current)} RENAME TO {ident(old)};\n"
            f"ALTER DATABASE {ident(new)} RENAME TO {ident(current)};\n"
            f"REVOKE ALL ON DATABASE {ident(current)} FROM PUBLIC;\n"
            "COMMIT;"
        )
    finally:
        for name in (current, old):  # whichever now holds the previous data
            if db.exists(name):
                db.sql(f"ALTER DATABASE {ident(name)} ALLOW_CONNECTIONS true;")


def verify(db: Db, name: str, expected: set[str]) -> str | None:
    """What is wrong with the restored database under its real name, or None."""
    try:
        missing = expected - db.tables(name)
    except RestoreError as exc:
        return str(exc)
    return f"tables missing after the restore: {', '.join(sorted(missing))}" if missing else None


Check = Callable[[Db, str, set[str]], str | None]


def restore(
    db: Db,
    current: str,
    owner: str,
    dump: bytes,
    log: Callable[[str], None] = print,
    check: Check = verify,
    before_swap: Callable[[str], None] | None = None,
) -> None:
    new, old = temporary_names(current)
    expected = dump_tables(db, dump)
    log(f"restoring into a new database {new}")
    db.sql(f"CREATE DATABASE {ident(new)} OWNER {ident(owner)};")
    try:
        db.run(
            ["pg_restore", "--exit-on-error", "--no-owner", "--no-acl", f"--role={owner}",
             f"--dbname={new}"],
            dump,
        )  # fmt: skip
        if problem := check(db, new, expected):
            raise RestoreError(problem)
        if before_swap:
            before_swap(new)
        log(f"swapping {new} -> {current} in one transaction (closing the app's connections)")
        swap(db, current, new, old)
    except RestoreError as exc:
        db.sql(f"DROP DATABASE IF EXISTS {ident(new)} WITH (FORCE);")
        raise RestoreError(f"{exc}; {current} is untouched") from None
    if problem := check(db, current, expected):
        swap(db, current, old, new)  # back: the previous data under its name again
        raise RestoreError(
            f"{problem}; {current} is the previous database again, "
            f"the restored one is kept as {new}"
        )
    db.sql(f"DROP DATABASE {ident(old)} WITH (FORCE);")
    log(f"verified; previous database dropped: {current} restored")


def replica_db() -> tuple[Db, str, str]:
    """The compose replica's db container: (Db, database name, owner)."""

    def read(path: str) -> str:
        out = subprocess.run(
            [*COMPOSE_EXEC, "db", "cat", path], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    name, owner = read("/run/jobtory-db/db_name"), read("/secrets/db_user")
    if not name or not owner:
        raise RestoreError("cannot read the database name/owner from the db container")
    return Db((*COMPOSE_EXEC, "-u", "postgres", "db")), name, owner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/restore", description=__doc__.split("\n")[0])
    parser.add_argument("--yes", "-y", action="store_true", help="replace the database")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    say = lambda text: print(f"[restore] {text}", file=sys.stderr)  # noqa: E731
    try:
        dump = args.file.read_bytes()
    except OSError as exc:
        say(f"cannot read {args.file}: {exc.strerror}")
        return 1
    try:
        db, name, owner = replica_db()
        if not args.yes:
            say(f"this REPLACES database {name!r} of the replica with {args.file}.")
            say("run again with --yes to do it.")
            return 2
        restore(db, name, owner, dump, log=say)
    except RestoreError as exc:
        say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
