"""Helpers for the app tests: PostgreSQL control, environment, CSRF, users."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT

APP_DIR = ROOT / "app"
HOST = "jobtory.test"
ORIGIN = f"https://{HOST}"
CLIENT_ID = "jobtory-test-client.apps.googleusercontent.com"
CLIENT_SECRET = "test-client-secret-not-a-real-one"
SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP"
BASE_ENV = {
    key: os.environ[key] for key in ("PATH", "HOME", "LANG", "SYSTEMROOT") if key in os.environ
}


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin holding initdb, else initdb on PATH."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class Postgres:
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_file: Path
    port: int
    as_user: list[str]

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        result = self.run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
            "-w", "-t", "30", "start",
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


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
