"""Profile `direct` (today's production): Caddy terminates TLS itself with `tls internal`
for the DuckDNS name. Runs only when the profile is up (scripts/up --profile direct)."""

from __future__ import annotations

import os
import ssl

import httpx
import pytest

from tests.helpers import ON_THE_REPLICA_WORKER, ROOT
from tests.replica.conftest import LocalhostTransport, Replica, compose

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]

DIRECT_PORT = int(os.environ.get("DIRECT_HTTPS_PORT", "9443"))
DIRECT_CA = ROOT / ".local" / "direct-ca.pem"


@pytest.fixture(scope="module")
def direct_client(replica: Replica) -> httpx.Client:
    running = compose("--profile", "direct", "ps", "--status", "running", "--services").stdout
    if "web-direct" not in running.split():
        pytest.skip("profile direct is not up (scripts/up --profile direct)")
    compose(
        "--profile", "direct", "cp",
        "web-direct:/data/caddy/pki/authorities/local/root.crt", str(DIRECT_CA),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(DIRECT_CA))
    return httpx.Client(transport=LocalhostTransport(context), timeout=10)


def duckdns_host() -> str:
    from jobtory_stack.spec.derived import derive
    from jobtory_stack.spec.loader import load_stack

    return derive(load_stack(ROOT / "stack.toml").env("local")).duckdns_host


def test_direct_mode_serves_https_with_its_own_certificate(direct_client: httpx.Client) -> None:
    base = f"https://{duckdns_host()}:{DIRECT_PORT}"
    with direct_client as http:
        page = http.get(f"{base}/")
        health = http.get(f"{base}/healthz")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "max-age=" in page.headers.get("strict-transport-security", "")
    assert health.status_code == 200 and health.text.strip() == "ok"
    assert "caddy" in health.headers.get("via", "").lower()
