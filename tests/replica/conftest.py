"""Fixtures for tests against the RUNNING compose replica (scripts/up).

Everything goes through 127.0.0.1 ports only: the ALB stand-in (8443/8080), the
published Postgres (15432), the AWS emulator (4566) and the fake OIDC provider
(9400). `*.localhost` names are mapped to 127.0.0.1 by the HTTP transport below
while the Host header and TLS SNI keep the real name, and TLS is verified
against the replica's own CA (.local/ca.pem, copied there by scripts/up).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, require

COMPOSE_FILE = ROOT / "compose" / "compose.yaml"
CA_FILE = ROOT / ".local" / "ca.pem"
HTTPS_PORT = int(os.environ.get("ALB_HTTPS_PORT", "8443"))
HTTP_PORT = int(os.environ.get("ALB_HTTP_PORT", "8080"))
DB_PORT = int(os.environ.get("DB_PORT", "15432"))
AWS_PORT = int(os.environ.get("AWS_PORT", "4566"))
OIDC_PORT = int(os.environ.get("OIDC_PORT", "9400"))
AWS_URL = f"http://127.0.0.1:{AWS_PORT}"
ENV_NAME = "local"


# --- the spec ------------------------------------------------------------------


@dataclass(frozen=True)
class LocalSpec:
    """What the tests need from stack.toml's local environment."""

    apex: str
    aliases: tuple[str, ...]
    ssm_prefix: str
    parameters: dict[str, str]  # plain values by short name
    secrets: tuple[str, ...]
    rds_parameters: dict[str, Any]
    engine_version: str
    database: str
    username: str

    @property
    def base_url(self) -> str:
        return f"https://{self.apex}:{HTTPS_PORT}"


def load_local_spec() -> LocalSpec:
    """The local env through the spec package (the source of truth)."""
    from jobtory_stack.spec.derived import derive
    from jobtory_stack.spec.loader import load_stack

    env = load_stack(ROOT / "stack.toml").env(ENV_NAME)
    derived = derive(env)
    return LocalSpec(
        apex=env.domain.apex,
        aliases=tuple(env.domain.aliases),
        ssm_prefix=env.ssm_prefix,
        parameters=dict(derived.parameters),
        secrets=tuple(derived.secret_names),
        rds_parameters=dict(env.rds.parameters),
        engine_version=env.rds.engine_version,
        database=env.rds.database,
        username=env.rds.master_username,
    )


# --- HTTP through the ALB stand-in -------------------------------------------------


class LocalhostTransport(httpx.BaseTransport):
    """Connect every request to 127.0.0.1, keeping the URL's host as Host and SNI.

    libc may not resolve `*.localhost`; this is curl's --resolve for httpx.
    """

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        self._inner = httpx.HTTPTransport(verify=verify, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in ("127.0.0.1", "localhost"):
            return self._inner.handle_request(request)
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.host
        direct = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,  # Host: the real name (set from the original URL)
            stream=request.stream,
            extensions=extensions,
        )
        return self._inner.handle_request(direct)

    def close(self) -> None:
        self._inner.close()


def ca_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CA_FILE))


def new_client(**kwargs: Any) -> httpx.Client:
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(transport=LocalhostTransport(ca_context()), **kwargs)


# --- docker compose ------------------------------------------------------------------


def compose(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env={**os.environ, **env} if env else None,
    )


def container_started_at(service: str) -> str:
    cid = compose("ps", "-q", service).stdout.strip()
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", cid],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def wait_until(
    probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.5
) -> float:
    """Poll probe() until it is true; returns the seconds it took. Bounded."""
    start = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - start < timeout:
        try:
            if probe():
                return time.monotonic() - start
        except Exception as exc:
            last = exc
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f}s (last error: {last!r})")


# --- AWS emulator and Postgres -----------------------------------------------------------


def ssm_client() -> Any:
    import boto3

    return boto3.client(
        "ssm",
        endpoint_url=AWS_URL,
        region_name="ap-northeast-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Replica:
    spec: LocalSpec
    db_password: str = field(repr=False)  # never in a failure report

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def client(self, **kwargs: Any) -> httpx.Client:
        return new_client(base_url=self.base_url, **kwargs)

    def connect_db(self) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=DB_PORT,
            dbname=self.spec.database,
            user=self.spec.username,
            password=self.db_password,
            connect_timeout=5,
            autocommit=True,
        )

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the app's database user; rows (empty when none)."""
        with self.connect_db() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

    def ready(self) -> bool:
        with new_client() as http:
            r = http.get(f"{self.base_url}/readyz")
            return r.status_code == 200

    def wait_ready(self, timeout: float = 90) -> float:
        return wait_until(self.ready, timeout, "the app answering /readyz through the ALB")

    def sign_in(self, http: httpx.Client, login_hint: str) -> dict[str, Any]:
        """The browser's OIDC dance against the fake provider; returns /api/me/."""
        r = http.get("/auth/google/login", params={"login_hint": login_hint})
        assert r.status_code == 302, r.text
        authorize = r.headers["location"]
        # the fake provider auto-approves and redirects back to GOOGLE_REDIRECT_URI
        with httpx.Client(timeout=10) as provider:
            back = provider.get(authorize)
        assert back.status_code in (302, 303), back.text
        callback = back.headers["location"]
        r = http.get(callback)
        assert r.status_code in (302, 303), f"callback: {r.status_code} {r.text[:300]}"
        me = http.get("/api/me/")
        assert me.status_code == 200, me.text
        return dict(me.json())

    def csrf_headers(self, http: httpx.Client) -> dict[str, str]:
        token = http.get("/api/csrf/").json()["csrfToken"]
        return {"X-CSRFToken": token, "Origin": self.base_url, "Referer": self.base_url + "/"}


def _reachable() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "docker is not installed (scripts/up)"
    if not CA_FILE.exists():
        return False, f"{CA_FILE} is missing: the replica is not up (scripts/up)"
    try:
        with new_client() as http:
            r = http.get(f"https://jobtory.localhost:{HTTPS_PORT}/healthz")
        if r.status_code != 200:
            return False, f"the replica's /healthz answered {r.status_code}"
        httpx.get(f"{AWS_URL}/moto-api/", timeout=5)
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return False, f"the replica is not reachable on 127.0.0.1 ({exc}); run scripts/up"
    return True, ""


@pytest.fixture(scope="session")
def replica() -> Iterator[Replica]:
    ok, why = _reachable()
    require(ok, why)
    spec = load_local_spec()
    value = ssm_client().get_parameter(Name=f"{spec.ssm_prefix}DB_PASSWORD", WithDecryption=True)
    yield Replica(spec=spec, db_password=value["Parameter"]["Value"])


def unique(prefix: str) -> str:
    return f"{prefix} {time.strftime('%H%M%S')}-{os.urandom(3).hex()}"


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
