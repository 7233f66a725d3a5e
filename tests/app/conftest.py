"""Fixtures for the app tests: a throwaway real PostgreSQL, the fake OIDC provider,
and Django configured from environment variables (as in production)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.support import (
    APP_DIR,
    CLIENT_ID,
    CLIENT_SECRET,
    HOST,
    Postgres,
    app_env,
    csrf_token,
    find_pg_bin,
    make_user,
    wait_http,
)
from tests.conftest import free_port
from tests.helpers import require


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on 127.0.0.1, in a temporary directory."""
    bin_dir = find_pg_bin()
    require(
        bin_dir is not None,
        "PostgreSQL server binaries not found (apt-get install -y postgresql)",
    )
    assert bin_dir is not None
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        require(shutil.which("runuser") is not None, "runuser is needed to run postgres as root")
        require(
            subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode == 0,
            "no 'postgres' user to run the server as",
        )
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="jobtory-pg-"))
    base.chmod(0o755)
    data_dir, socket_dir = base / "data", base / "sock"
    socket_dir.mkdir()
    if as_user:
        shutil.chown(base, "postgres")
        shutil.chown(socket_dir, "postgres")
    pg = Postgres(bin_dir, data_dir, socket_dir, base / "postgres.log", free_port(), as_user)
    init = pg.run(
        "initdb", "-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--locale=C", "--no-sync",
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr}")
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def database(postgres: Postgres) -> str:
    """A fresh application database and role; returns the database name."""
    import psycopg

    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE jobtory LOGIN PASSWORD 'jobtory-db-password'")
        conn.execute("CREATE DATABASE jobtory OWNER jobtory")
    return "jobtory"


@pytest.fixture(scope="session")
def fake_oidc() -> Iterator[str]:
    """The fake OIDC provider as a real process on 127.0.0.1; returns its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable, str(APP_DIR / "fake_oidc.py"), "--host", "127.0.0.1",
            "--port", str(port), "--public-url", url, "--internal-url", url,
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_http(f"{url}/healthz", proc, "fake OIDC provider")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def app_environment(postgres: Postgres, database: str, fake_oidc: str) -> dict[str, str]:
    return app_env(postgres, database, fake_oidc)


@pytest.fixture(scope="session")
def django_app(app_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    """Django set up in this process from environment variables, migrated, static collected."""
    static_root = tempfile.mkdtemp(prefix="jobtory-static-")
    env = {**app_environment, "DJANGO_STATIC_ROOT": static_root}
    saved = {name: os.environ.get(name) for name in [*env, "DJANGO_SETTINGS_MODULE"]}
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    import django
    from django.core.management import call_command

    try:
        django.setup()  # settings are read from the environment here, once
    finally:
        # Nothing leaks into other test groups: Django keeps what it read.
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    try:
        yield env
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(static_root, ignore_errors=True)


@pytest.fixture
def client(django_app: dict[str, str]):  # type: ignore[no-untyped-def]
    """A browser behind Caddy: https (X-Forwarded-Proto), the public Host, CSRF enforced."""
    from django.test import Client

    return Client(
        enforce_csrf_checks=True,
        HTTP_HOST=HOST,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_REAL_IP="203.0.113.7",
    )


@pytest.fixture
def signed_in(client):  # type: ignore[no-untyped-def]
    """The client with a signed-in user and a CSRF token; returns (client, token, user)."""
    user = make_user()
    client.force_login(user)
    return client, csrf_token(client), user
