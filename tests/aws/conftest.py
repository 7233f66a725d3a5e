"""The aws group's moto server: the shared fixture's, with ACM issuing at once.

moto issues a requested certificate only after MOTO_ACM_VALIDATION_WAIT seconds
(default 60, read when the server starts); the deployer waits for ISSUED, so this
group starts its own server process with the wait set to 0. Everything else
(`aws_env`: reset + dummy credentials + AWS_ENDPOINT_URL) is the shared fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from jobtory_stack.aws import core
from tests.conftest import free_port
from tests.helpers import require


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    require(exe is not None, "moto_server is not installed (uv sync)")
    assert exe is not None
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ACM_VALIDATION_WAIT": "0"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto server did not start within 30 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def client_hook() -> Iterator[Callable[[Callable[[Any], None]], None]]:
    """Register a function called with every client the reconciler creates."""
    added: list[Callable[[Any], None]] = []

    def add(hook: Callable[[Any], None]) -> None:
        added.append(hook)
        core.CLIENT_HOOKS.append(hook)

    yield add
    for hook in added:
        core.CLIENT_HOOKS.remove(hook)


@pytest.fixture
def mutations(client_hook: Callable[[Callable[[Any], None]], None]) -> list[str]:
    """Every mutating API call (not Describe*/Get*/List*) made through the reconciler."""
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        if not model.name.startswith(("Describe", "Get", "List")):
            calls.append(model.name)

    client_hook(lambda client: client.meta.events.register("before-call", count))
    return calls
