"""Fixtures for the fleet tests: pyinfra against the stand-in EC2 hosts (profile fleet).

Needs the replica's `aws` and `db` running (scripts/up) and the jobtory/ec2 and
jobtory/alb images. The fixtures (re)create ec2-1, ec2-2 and alb-fleet only
(`--no-deps`), so the base replica is left as it is. Everything is reached through
127.0.0.1: SSH 2221/2222, the fleet ALB stand-in on 8444 (HTTPS) and 9998 (runtime API),
the AWS emulator on 4566. Every load is bounded in requests and in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, require

COMPOSE = ["docker", "compose", "-f", "compose/compose.yaml", "-f", "compose/fleet.yaml"]
FLEET_SERVICES = ["ec2-1", "ec2-2", "alb-fleet"]
ALB_HTTPS = int(os.environ.get("ALB_FLEET_HTTPS_PORT", "8444"))
ALB_RUNTIME = int(os.environ.get("ALB_FLEET_RUNTIME_PORT", "9998"))
AWS_URL = f"http://127.0.0.1:{os.environ.get('AWS_PORT', '4566')}"
HOST_HEADER = "jobtory.localhost"
CONTAINERS = {"ec2-1": "jobtory-ec2-1-1", "ec2-2": "jobtory-ec2-2-1"}


def ssm() -> Any:
    """An SSM client of the replica's emulator (its dummy credentials)."""
    import boto3

    return boto3.client(
        "ssm",
        endpoint_url=AWS_URL,
        region_name="ap-northeast-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def cgroup_env() -> dict[str, str]:
    """cgroup v2 hosts need systemd's subtree writable (see compose/fleet.yaml)."""
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return {"EC2_CGROUP_READ_ONLY": "false" if v2 else "true"}


def compose(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMPOSE, "--profile", "fleet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env={**os.environ, **cgroup_env()},
    )


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return probe.returncode == 0


def image_exists(name: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return probe.returncode == 0


def aws_up() -> bool:
    try:
        httpx.get(f"{AWS_URL}/moto-api/", timeout=3)
    except httpx.HTTPError:
        return False
    return True


def host_exec(host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside a stand-in host (as root), for checks only."""
    return subprocess.run(
        ["docker", "exec", CONTAINERS.get(host, host), "bash", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@dataclass
class Deploy:
    code: int
    output: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def run_deploy(*args: str, timeout: float = 900) -> Deploy:
    """`deploy.py hosts --env local ARGS --json` as a subprocess (like a user would)."""
    import json

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "deploy.py", "hosts", "--env", "local", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "AWS_ENDPOINT_URL": AWS_URL},
    )
    output = proc.stdout + proc.stderr
    summary: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{") and '"changed_operations"' in line:
            summary = json.loads(line)
    return Deploy(proc.returncode, output, time.monotonic() - started, summary)


def alb_client() -> httpx.Client:
    return httpx.Client(
        base_url=f"https://127.0.0.1:{ALB_HTTPS}",
        headers={"Host": HOST_HEADER},
        verify=False,  # the fleet ALB's local CA; TLS itself is the alb tests' subject
        timeout=10,
    )


def alb_versions(n: int = 20) -> Counter[str]:
    seen: Counter[str] = Counter()
    with alb_client() as client:
        for _ in range(n):
            response = client.get("/api/version")
            seen[response.json()["version"] if response.status_code == 200 else "error"] += 1
    return seen


def wait_targets(state: str = "healthy", timeout: float = 120) -> list[Any]:
    from jobtory_stack.hosts.standin import AlbRuntime

    runtime = AlbRuntime("127.0.0.1", ALB_RUNTIME)
    deadline = time.monotonic() + timeout
    while True:
        targets = runtime.targets()
        if all(t.health == state for t in targets):
            return targets
        if time.monotonic() > deadline:
            raise AssertionError(f"targets not all {state}: {targets}")
        time.sleep(0.5)


class Load:
    """Bounded load through the fleet ALB: `workers` threads GET /api/version until
    stop() (or max_requests / max_seconds), recording status and version in order."""

    def __init__(
        self, workers: int = 4, max_requests: int = 30000, max_seconds: float = 300
    ) -> None:
        self.workers = workers
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        # (when the request started, version | "error:<why>"), in order of completion
        self.results: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with alb_client() as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                started = time.monotonic()
                try:
                    response = client.get("/api/version")
                    if response.status_code == 200:
                        outcome = str(response.json()["version"])
                    else:
                        outcome = f"error:{response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = f"error:{type(exc).__name__}"
                with self._lock:
                    self.results.append((started, outcome))

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._worker, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_for(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.results) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def failures(self) -> list[tuple[float, str]]:
        return [r for r in self.results if r[1].startswith("error")]

    def versions(self) -> list[str]:
        return [v for _, v in self.results if not v.startswith("error")]


@dataclass(frozen=True)
class Fleet:
    old: str
    new: str
    bad: str


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Fresh stand-in hosts (re-created) and the fleet ALB, on the running replica."""
    require(docker_ok(), "docker is not available")
    require(image_exists("jobtory/ec2:latest"), "image jobtory/ec2 missing: compose build ec2-1")
    require(image_exists("jobtory/alb:latest"), "image jobtory/alb missing: scripts/build-images")
    require(aws_up(), f"the replica's AWS emulator is not up at {AWS_URL} (scripts/up)")
    from replica.fleet import ensure_fleet_key

    ensure_fleet_key()
    # JOBTORY_FLEET_REUSE=1 keeps running hosts (faster while iterating; not "fresh")
    recreate = [] if os.environ.get("JOBTORY_FLEET_REUSE") == "1" else ["--force-recreate"]
    compose("up", "-d", "--no-deps", *recreate, "--wait", *FLEET_SERVICES, timeout=300)
    stamp = time.strftime("%H%M%S")
    yield Fleet(old=f"t{stamp}-old", new=f"t{stamp}-new", bad=f"t{stamp}-bad")


@pytest.fixture(scope="session")
def first_deploy(fleet: Fleet) -> Deploy:
    """The first deploy of `fleet.old` to the fresh hosts."""
    result = run_deploy("--version", fleet.old)
    assert result.code == 0, result.output
    return result
