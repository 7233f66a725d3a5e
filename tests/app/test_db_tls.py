"""The replica's db serves TLS from a locally generated CA, so sslmode=verify-full (what
production's app uses against RDS) is tested against it: the right CA and name connect,
a wrong CA or a wrong name do not, and TCP without TLS is refused (like rds.force_ssl)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import psycopg
import pytest

from tests.app.support import APP_DIR, Postgres, app_env
from tests.conftest import free_port
from tests.images import DB_IMAGE, TEST_PREFIX, remove, require_image

TLS_DIR = "/var/lib/postgresql/tls"
CA_DIR = "/var/lib/postgresql/ca"  # the db-ca volume: what app and the fleet mount
USER, NAME, PASSWORD = "jobtory", "jobtory", "tls-test-password-0123"


@dataclass(frozen=True)
class Db:
    container: str
    port: int
    ca: Path

    def connect(self, **options: str) -> psycopg.Connection:
        params = {"host": "localhost", "port": str(self.port), "user": USER, "dbname": NAME}
        params |= {"password": PASSWORD, "connect_timeout": "5", **options}
        return psycopg.connect(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    """The db image with its own entrypoint (initdb, role, TLS), published on 127.0.0.1
    like the replica's (the connection arrives from the network's gateway)."""
    require_image(DB_IMAGE)
    tmp = tmp_path_factory.mktemp("db-tls")
    (tmp / "generated").mkdir()
    (tmp / "generated" / "postgresql.conf").write_text("# the spec's parameters: none here\n")
    (tmp / "secrets").mkdir(mode=0o700)
    for key, value in (("db_user", USER), ("db_name", NAME), ("db_password", PASSWORD)):
        (tmp / "secrets" / key).write_text(value)
        os.chmod(tmp / "secrets" / key, 0o600)
    port = free_port()
    name = f"{TEST_PREFIX}-db-tls-{port}"
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--init",
         "--publish", f"127.0.0.1:{port}:5432",
         "--volume", f"{tmp / 'generated'}:/generated:ro",
         "--volume", f"{tmp / 'secrets'}:/secrets:ro", DB_IMAGE],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        ca = tmp / "ca.pem"
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = subprocess.run(
                    ["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1"],
                    capture_output=True, timeout=30, check=False,
                )  # fmt: skip
                if ready.returncode == 0:
                    cert = subprocess.run(
                        ["docker", "exec", name, "cat", f"{TLS_DIR}/ca.crt"],
                        capture_output=True, check=True, timeout=30,
                    )  # fmt: skip
                    ca.write_bytes(cert.stdout)
                    break
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                why = f"db not ready with TLS ({TLS_DIR}/ca.crt)"
                pytest.fail(f"{why}: {logs.stdout}{logs.stderr}")
            time.sleep(0.3)
        yield Db(name, port, ca)
    finally:
        remove(name)


def test_verify_full_with_the_local_ca_connects(db: Db) -> None:
    with db.connect(sslmode="verify-full", sslrootcert=str(db.ca)) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)


def test_another_ca_is_refused(db: Db) -> None:
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        db.connect(sslmode="verify-full", sslrootcert=certifi.where()).close()


def test_a_name_the_certificate_does_not_hold_is_refused(db: Db) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        # the same server at 127.0.0.1, verified against another name
        wrong = {"host": "wrong.example", "hostaddr": "127.0.0.1"}
        db.connect(sslmode="verify-full", sslrootcert=str(db.ca), **wrong).close()


def test_tcp_without_tls_is_refused(db: Db) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        db.connect(sslmode="disable").close()


def test_no_key_but_the_servers_is_kept(db: Db) -> None:
    """The CA's key is thrown away once the server certificate is signed."""
    listing = subprocess.run(
        ["docker", "exec", db.container, "ls", TLS_DIR], capture_output=True, text=True, check=True
    )
    assert sorted(listing.stdout.split()) == ["ca.crt", "server.crt", "server.key"]
    mode = subprocess.run(
        ["docker", "exec", db.container, "stat", "-c", "%a %U", f"{TLS_DIR}/server.key"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert mode.stdout.split() == ["600", "postgres"]


def test_the_ca_alone_is_published_for_the_app(db: Db) -> None:
    """The db-ca volume (mounted by app and the fleet) holds the CA's certificate only."""
    listing = subprocess.run(
        ["docker", "exec", db.container, "ls", CA_DIR], capture_output=True, text=True, check=True
    )
    assert listing.stdout.split() == ["ca.pem"]
    published = subprocess.run(
        ["docker", "exec", db.container, "cat", f"{CA_DIR}/ca.pem"], capture_output=True, check=True
    )
    assert published.stdout == db.ca.read_bytes()


def django_query(db: Db, **settings: str) -> subprocess.CompletedProcess[str]:
    """The app's own settings (app/config/settings.py) from its environment, as the
    replica's app gets it from SSM: DB_SSLMODE and DB_SSLROOTCERT as the spec derives them."""
    env = app_env(Postgres("unused", db.port), NAME, "https://accounts.google.com")
    env |= {"DB_HOST": "localhost", "DB_USER": USER, "DB_PASSWORD": PASSWORD, **settings}
    env |= {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings"}
    probe = (
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')\n"
        "    print('ssl', c.fetchone()[0])"
    )
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", probe],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_app_connects_with_verify_full(db: Db) -> None:
    ok = django_query(db, DB_SSLMODE="verify-full", DB_SSLROOTCERT=str(db.ca))
    assert ok.stdout.split() == ["ssl", "True"], ok.stderr[-2000:]
    # the same settings against a CA that did not sign the server: refused
    other = django_query(db, DB_SSLMODE="verify-full", DB_SSLROOTCERT=certifi.where())
    assert other.returncode != 0 and "certificate verify failed" in other.stderr
