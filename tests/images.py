"""The replica's own images as throwaway test services: HAProxy from jobtory/alb and
PostgreSQL from jobtory/db, so a host without those Debian packages tests the same
things (scripts/up builds the images). Containers use the host's network (they listen on
127.0.0.1 and reach the tests' own servers there) and are removed when the test is done."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import require

ALB_IMAGE = "jobtory/alb:latest"
# JOBTORY_DB_IMAGE: a db image built under another tag (a branch testing its own)
DB_IMAGE = os.environ.get("JOBTORY_DB_IMAGE", "jobtory/db:latest")
# JOBTORY_TEST_PREFIX: the names of the tests' throwaway containers (a run beside another)
TEST_PREFIX = os.environ.get("JOBTORY_TEST_PREFIX", "jobtory-test")


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def image_exists(name: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return probe.returncode == 0


def require_image(image: str) -> None:
    require(docker_ok(), "no Docker engine answers (scripts/up starts one)")
    require(image_exists(image), f"image {image} is missing (scripts/up builds it)")


def run_command(
    image: str,
    entrypoint: str,
    name: str,
    mounts: Sequence[Path] = (),
    user: str | None = None,
    detach: bool = False,
    keep: bool = False,
) -> list[str]:
    """`docker run` of `entrypoint` in `image` on the host network; `mounts` are bound at
    the same path, so file names in configs mean the same inside. The container is
    removed when it ends, unless `keep` (then `remove` it)."""
    cmd = ["docker", "run", "--name", name, "--network", "host", "--entrypoint", entrypoint]
    if not keep:
        cmd.append("--rm")
    if detach:
        cmd.append("--detach")
    if user:
        cmd += ["--user", user]
    for path in mounts:
        cmd += ["--volume", f"{path}:{path}"]
    return [*cmd, image]


def remove(name: str) -> None:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False, timeout=60)
