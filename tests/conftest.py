"""Fixtures shared by every test group."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import require

SHARED_REPLICA = ("replica", "fleet")
REPO = Path(__file__).resolve().parent.parent
MOTO_START_SECONDS = 120


@pytest.hookimpl(trylast=True)  # after xdist has put the group into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test of a group that shares the replica must run on the replica's worker, and the
    grouping must work: xdist marks a grouped test's id with "@group" on the workers."""
    grouping = bool(getattr(config.option, "loadgroup", False))  # xdist workers, loadgroup
    for item in items:
        shares = any(item.get_closest_marker(name) for name in SHARED_REPLICA)
        if shares and item.get_closest_marker("xdist_group") is None:
            raise pytest.UsageError(
                f"{item.nodeid}: add tests.helpers.ON_THE_REPLICA_WORKER to its pytestmark"
            )
        if shares and grouping and not item.nodeid.endswith("@replica"):
            raise pytest.UsageError(
                f"{item.nodeid}: xdist did not group it (--dist loadgroup); is pytest newer "
                "than this pytest-xdist supports? (pytest-dev/pytest-xdist#1386)"
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_moto(command: list[str]) -> Iterator[str]:
    """A moto server process on a free port of 127.0.0.1 until the generator is closed.

    moto issues a requested ACM certificate only after MOTO_ACM_VALIDATION_WAIT
    seconds (default 60, read at start); the deployer waits for ISSUED, so the
    server starts with the wait at 0, as the replica's `aws` service does.
    """
    port = free_port()
    proc = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ACM_VALIDATION_WAIT": "0"},
        cwd=REPO,  # python -m replica.emulator
    )
    url = f"http://127.0.0.1:{port}"
    # moto imports in seconds, the patches' EC2 / Auto Scaling models in a few more; on a
    # loaded machine (parallel workers) that can take far longer: bounded generously
    deadline = time.monotonic() + MOTO_START_SECONDS
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(command)} exited with {proc.returncode}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"moto server did not start within {MOTO_START_SECONDS} s")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The replica's emulator, a real moto server process with the repository's patches
    (`python -m replica.emulator`, as in the `aws` image), for the whole session."""
    require(
        shutil.which("moto_server", path=os.path.dirname(sys.executable)) is not None,
        "moto_server is not installed (uv sync)",
    )
    yield from run_moto([sys.executable, "-m", "replica.emulator"])


@pytest.fixture(scope="session")
def unpatched_moto_endpoint() -> Iterator[str]:
    """moto's own server without the patches: each patch's test shows the gap on it."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    require(exe is not None, "moto_server is not installed (uv sync)")
    assert exe is not None
    yield from run_moto([exe])


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at a freshly reset moto server with dummy credentials."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("JOBTORY_AWS_EMULATOR", "moto")  # the endpoint is an emulator
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint
