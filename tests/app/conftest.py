"""Fixtures for the app tests: a throwaway real PostgreSQL, the fake OIDC provider,
and Django configured from environment variables (as in production)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.support import (
    APP_DIR,
    CLIENT_ID,
    CLIENT_SECRET,
    HOST,
    Postgres,
    app_env,
    csrf_token,
    fake_provider_in_process,
    make_user,
    wait_http,
)
from tests.conftest import free_port
from tests.images import DB_IMAGE, TEST_PREFIX, require_image


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL on 127.0.0.1: the replica's own db image (PostgreSQL 17, as the
    spec's RDS), in a throwaway container with its data in the container."""
    require_image(DB_IMAGE)
    port = free_port()
    pg = Postgres(f"{TEST_PREFIX}-postgres-{port}", port)
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


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


@pytest.fixture
def own_provider(django_app: dict[str, str]) -> Iterator[Any]:
    with fake_provider_in_process() as provider:
        yield provider
