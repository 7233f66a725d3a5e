"""scripts/duckdns-update against a fake DuckDNS on 127.0.0.1, token from moto's SSM."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from jobtory_stack import duckdns
from tests.helpers import ROOT

pytestmark = pytest.mark.caddy

TOKEN = "0f6a1c2e-9b7d-4e3a-8c51-5d2f0e7a9b13"
PREFIX = "/jobtory/test/"
SCRIPT = ROOT / "scripts" / "duckdns-update"


class FakeDuckDNS:
    """Answers like www.duckdns.org/update: OK for the right token and domain, else KO."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query, keep_blank_values=True)
                fake.requests.append(query)
                ok = (
                    url.path == "/update"
                    and query.get("token") == [TOKEN]
                    and query.get("domains") == ["jobtory"]
                )
                body = b"OK" if ok else b"KO"
                self.send_response(fake.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/update"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeDuckDNS]:
    server = FakeDuckDNS()
    yield server
    server.close()


@pytest.fixture
def token_in_ssm(aws_env: str) -> str:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"{PREFIX}DUCKDNS_TOKEN", Value=TOKEN, Type="SecureString")
    return TOKEN


def run_script(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUCKDNS_ENDPOINT": endpoint}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--domain", "jobtory.duckdns.org", "--prefix", PREFIX, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_update_ok_token_from_ssm_never_in_output(fake: FakeDuckDNS, token_in_ssm: str) -> None:
    out = run_script(fake.endpoint)
    assert out.returncode == 0, out.stderr
    assert fake.requests == [{"domains": ["jobtory"], "token": [TOKEN], "ip": [""]}]
    assert TOKEN not in out.stdout + out.stderr
    assert "token=REDACTED" in out.stderr and "-> OK" in out.stderr


def test_ko_exits_non_zero_without_the_token(fake: FakeDuckDNS, aws_env: str) -> None:
    boto3.client("ssm").put_parameter(
        Name=f"{PREFIX}DUCKDNS_TOKEN", Value="wrong-" + TOKEN, Type="SecureString"
    )
    out = run_script(fake.endpoint, "--ip", "203.0.113.9")
    assert out.returncode == 1
    assert "KO" in out.stderr and "ip=203.0.113.9" in out.stderr
    assert TOKEN not in out.stdout + out.stderr
    assert fake.requests[0]["ip"] == ["203.0.113.9"]


def test_http_error_and_unreachable_endpoint(fake: FakeDuckDNS, token_in_ssm: str) -> None:
    fake.status = 500
    out = run_script(fake.endpoint)
    assert out.returncode == 1 and "HTTP 500" in out.stderr
    assert TOKEN not in out.stdout + out.stderr
    fake.close()
    out = run_script(fake.endpoint, "--timeout", "2")
    assert out.returncode == 1 and "ConnectError" in out.stderr
    assert TOKEN not in out.stdout + out.stderr


def test_missing_parameter_is_a_clear_error(fake: FakeDuckDNS, aws_env: str) -> None:
    out = run_script(fake.endpoint)
    assert out.returncode == 1
    assert f"SSM parameter {PREFIX}DUCKDNS_TOKEN not found" in out.stderr
    assert fake.requests == []


def test_library_logs_never_show_the_token(
    fake: FakeDuckDNS, token_in_ssm: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = duckdns.token_from_ssm(f"{PREFIX}DUCKDNS_TOKEN")
    assert duckdns.update("jobtory", token, endpoint=fake.endpoint) == "OK"
    assert "HTTP Request" in caplog.text  # httpx did log the request ...
    assert TOKEN not in caplog.text  # ... redacted
    with pytest.raises(duckdns.DuckDNSError) as exc:
        duckdns.update("jobtory", "x" + token, endpoint=fake.endpoint)
    assert token not in str(exc.value) and TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("given", "expected"),
    [("jobtory.duckdns.org", "jobtory"), ("jobtory", "jobtory"), ("a.duckdns.org,b", "a,b")],
)
def test_subdomains(given: str, expected: str) -> None:
    assert duckdns.subdomains(given) == expected


def test_bad_domain() -> None:
    with pytest.raises(duckdns.DuckDNSError, match="not a DuckDNS name"):
        duckdns.subdomains("job tory.example.com")
