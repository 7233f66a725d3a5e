"""A real browser (headless Chromium) loads the front end through the ALB over HTTPS
and renders a problem that was written straight into Postgres."""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import ssl
import subprocess
import tempfile

import pytest

from tests.helpers import ON_THE_REPLICA_WORKER, require
from tests.replica.conftest import HTTPS_PORT, Replica, ca_context, unique

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]


def leaf_spki_sha256(host: str, port: int) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the served leaf, verified against our CA.

    Chromium is told to accept exactly this key (--ignore-certificate-errors-spki-list),
    not every certificate: the chain itself is checked here with the replica's CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ca_context().wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_headless_chromium_renders_a_problem_from_postgres(replica: Replica) -> None:
    browser = find_chromium()
    require(browser is not None, "chromium is not installed (apt-get install chromium)")
    assert browser is not None
    title = unique("Browser-visible problem")
    replica.query(
        "INSERT INTO problems_problem (title, statement, created_at) VALUES (%s, '', now())",
        title,
    )
    host = replica.spec.apex
    try:
        pin = leaf_spki_sha256(host, HTTPS_PORT)
    except ssl.SSLError as exc:
        pytest.fail(f"the ALB's certificate does not verify against .local/ca.pem: {exc}")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                f"--host-resolver-rules=MAP {host} 127.0.0.1",
                f"--ignore-certificate-errors-spki-list={pin}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"https://{host}:{HTTPS_PORT}/",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<html" in dom.lower(), dom[:500]
    assert title in dom, f"problem title not rendered; DOM starts: {dom[:1500]}"
