"""Helpers for the app tests: PostgreSQL control, environment, CSRF, users."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.helpers import ROOT
from tests.images import DB_IMAGE, remove, run_command

APP_DIR = ROOT / "app"
HOST = "jobtory.test"
ORIGIN = f"https://{HOST}"
CLIENT_ID = "jobtory-test-client.apps.googleusercontent.com"
CLIENT_SECRET = "test-client-secret-not-a-real-one"
SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP"
BASE_ENV = {
    key: os.environ[key] for key in ("PATH", "HOME", "LANG", "SYSTEMROOT") if key in os.environ
}


@dataclass
class Postgres:
    """PostgreSQL of the replica's db image, listening on 127.0.0.1:`port` (host network);
    user postgres, trust authentication from loopback only. stop() and start() keep the
    data (the container stays); remove() ends it."""

    container: str
    port: int

    def start(self, timeout: float = 60) -> None:
        script = (
            "[ -f /tmp/pgdata/PG_VERSION ] ||"  # a restart keeps its data
            " initdb -D /tmp/pgdata -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null"
            f"; exec postgres -D /tmp/pgdata -p {self.port} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        exists = subprocess.run(
            ["docker", "start", self.container], capture_output=True, check=False, timeout=60
        )
        if exists.returncode != 0:  # the first start: create it
            cmd = run_command(
                DB_IMAGE, "sh", self.container, user="postgres", detach=True, keep=True
            )
            subprocess.run([*cmd, "-c", script], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                ["docker", "exec", self.container, "pg_isready", "-q", "-h", "127.0.0.1",
                 "-p", str(self.port)],
                capture_output=True, check=False, timeout=30,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        logs = subprocess.run(["docker", "logs", self.container], capture_output=True, text=True)
        raise RuntimeError(f"postgres did not start: {logs.stdout}{logs.stderr}")

    def stop(self) -> None:
        subprocess.run(
            ["docker", "stop", "-t", "10", self.container], capture_output=True, timeout=60
        )

    def remove(self) -> None:
        remove(self.container)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


def load_fake_oidc() -> ModuleType:
    """app/fake_oidc.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("fake_oidc", APP_DIR / "fake_oidc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def fake_provider_in_process(issuer: str | None = None) -> Iterator[Any]:
    """The fake provider served from this process, as the app's GOOGLE_OIDC_ISSUER while
    the block runs; yields its Provider (signer within reach, to forge tokens with;
    `.internal_url` is its URL). `issuer`: what its discovery document claims instead."""
    from accounts import oidc
    from django.test import override_settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fake = load_fake_oidc()
    server = fake.make_server("127.0.0.1", port, url, url, CLIENT_ID, CLIENT_SECRET, quiet=True)
    provider = server.RequestHandlerClass.provider
    if issuer:  # the module was loaded for this server alone: its class is ours to change
        type(provider).issuer = property(lambda self: issuer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with override_settings(GOOGLE_OIDC_ISSUER=url):
            yield provider
    finally:
        server.shutdown()
        server.server_close()
        oidc.clear_cache()


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{what} did not answer at {url} within {timeout} s")


def start_sh_env(settings: Mapping[str, str], port: int) -> dict[str, str]:
    """The environment app/start.sh runs with: a clean one (as systemd gives), `settings`,
    this venv on PATH, gunicorn on 127.0.0.1:`port` with 2 workers."""
    venv_bin = os.path.dirname(sys.executable)
    return {
        **BASE_ENV,
        **settings,
        "PATH": f"{venv_bin}{os.pathsep}{BASE_ENV.get('PATH', '')}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
    }


def app_env(postgres: Postgres, database: str, oidc_url: str) -> dict[str, str]:
    """Production-like environment for the app (what SSM would provide)."""
    return {
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": f"{HOST},www.{HOST}",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"{ORIGIN},https://www.{HOST}",
        "FRONTEND_BASE_URL": ORIGIN,
        "VITE_API_BASE": f"{ORIGIN}/api",
        "GOOGLE_REDIRECT_URI": f"{ORIGIN}/auth/google/callback",
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "GOOGLE_OIDC_ISSUER": oidc_url,
        "JOBTORY_ENV": "local",  # the fake provider answers on http://127.0.0.1
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(postgres.port),
        "DB_NAME": database,
        "DB_USER": "jobtory",
        "DB_PASSWORD": "jobtory-db-password",
        "DB_CONNECT_TIMEOUT": "3",
        "APP_VERSION": "1.2.3-test",
        "DJANGO_LOG_LEVEL": "WARNING",
    }


def csrf_token(client) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/api/csrf/")
    assert response.status_code == 200, response.content
    return str(response.json()["csrfToken"])


def make_user(sub: str = "sub-writer", email: str = "writer@example.test"):  # type: ignore[no-untyped-def]
    from accounts.models import User

    user, _ = User.objects.get_or_create(google_sub=sub, defaults={"email": email, "name": "W"})
    return user


@contextlib.contextmanager
def postgres_down(pg: Postgres) -> Iterator[None]:
    pg.stop()
    try:
        yield
    finally:
        pg.start()
