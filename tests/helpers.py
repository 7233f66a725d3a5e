"""Shared test helpers: a missing service skips locally but fails in CI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The tests that share the running replica (its db, emulator and ALB stand-ins, the
# fleet's hosts) run on one xdist worker, one after the other (--dist loadgroup). A
# static module mark: xdist reads the groups before conftest hooks could add them.
ON_THE_REPLICA_WORKER = pytest.mark.xdist_group("replica")


def require(ok: bool, why: str) -> None:
    """Skip (locally) or fail (CI=true) when a service or tool the test needs is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {why}", pytrace=False)
    pytest.skip(why)


def git_checkout(repo: Path, files: tuple[str, ...], gitignore: str) -> Path:
    """A small git checkout: `files` (each holding its own name) committed, `.gitignore`."""
    for name in files:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(f"# {name}\n")
    (repo / ".gitignore").write_text(gitignore)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "tracked"], check=True)
    return repo


def private_key_pem() -> str:
    """A throwaway private key, made now: no key material is ever committed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def stub_release(name: str, env: str = "staging") -> str:
    """A manifest named `name` in the env's release store (which `apply` created), so a
    launch template can name the release and its sha256; no instance boots from it in
    the tests that use this (tests/aws/test_user_data_verify.py boots a real one)."""
    import hashlib
    import json

    import boto3

    body = json.dumps({"format": "jobtory-release/1", "release": name, "objects": []}).encode()
    boto3.client("s3", region_name="ap-northeast-2").put_object(
        Bucket=f"jobtory-{env}-releases-123456789012",  # moto's account
        Key=f"releases/{name}/manifest.json",
        Body=body,
    )
    return hashlib.sha256(body).hexdigest()
