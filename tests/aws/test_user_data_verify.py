"""The launch template's user data fetches its release from the store and verifies it
before anything is unpacked: its verification part, cut from the rendered script, run
with bash against a real moto server holding a published release.

The script runs as on the fleet replica's hosts: the emulator's endpoint and a dummy
credentials file come from the user data's AWS_ENV, nothing from the caller's
environment. With credentials in a file (or the environment) botocore's chain never asks
the instance metadata service; on EC2 it asks IMDSv2 for the instance role's."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from jobtory_stack.hosts import store as hosts_store
from jobtory_stack.hosts.release import Release, build_named
from jobtory_stack.render.user_data import render_user_data
from tests.aws.test_release_store import BUCKET, apply_store, ctx_for
from tests.unit.test_release_build import fake_checkout

pytestmark = pytest.mark.aws

EXEC_LINE = "exec > >(tee -a /var/log/jobtory-bootstrap.log) 2> >(tee -a /var/log/jobtory-bootstrap.log >&2)"  # noqa: E501
ARTIFACTS_LINE = "ARTIFACTS=/var/lib/jobtory/artifacts"


def verification_part(script: str, artifacts: Path) -> str:
    """The rendered user data up to the end of its fetch-and-verify step, writing to
    `artifacts` instead of /var/lib/jobtory/artifacts and logging to stdout/stderr only."""
    lines = script.splitlines()
    assert EXEC_LINE in lines and ARTIFACTS_LINE in lines  # the script's shape, as tested
    end = lines.index("FETCH_RELEASE")  # the heredoc's terminator: the program ends there
    part = [line for line in lines[: end + 1] if line != EXEC_LINE]
    return "\n".join(ARTIFACTS_LINE.replace("/var/lib/jobtory/artifacts", str(artifacts))
                     if line == ARTIFACTS_LINE else line for line in part) + "\n"  # fmt: skip


def boot(script: str, tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run the verification part with bash; `python3` is this venv's (it has boto3, as
    an image with Debian's python3-boto3 has), and no AWS_* setting comes from here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    artifacts = tmp_path / "artifacts"
    proc = subprocess.run(
        ["bash", "-s"],
        input=verification_part(script, artifacts),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return artifacts, proc


@pytest.fixture
def published(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Release, str]:
    """A release in the store; the user data the launch template would carry for it."""
    repo, out = fake_checkout(tmp_path, monkeypatch)
    apply_store(ctx_for())
    built = build_named(repo, out, repo)
    hosts_store.publish(ctx_for(), built)
    creds = tmp_path / "aws-credentials"  # the replica's stand-in for the instance profile
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    script = render_user_data(
        "staging",
        built.name,
        bucket=BUCKET,
        region="ap-northeast-2",
        manifest_sha256=built.manifest_sha256,
        aws_env={"AWS_ENDPOINT_URL": aws_env, "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
    )
    return built, script


def test_a_published_release_is_fetched_and_verified(
    published: tuple[Release, str], tmp_path: Path
) -> None:
    built, script = published
    artifacts, proc = boot(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"jobtory: release {built.name} verified" in proc.stdout
    for obj in built.objects:
        assert hashlib.sha256((artifacts / obj["file"]).read_bytes()).hexdigest() == obj["sha256"]
    assert (artifacts / f"manifest-{built.name}.json").read_bytes() == built.manifest
    # what the pyinfra deploy then reads (hosts.settings.Manifest), and nothing half-written
    from jobtory_stack.hosts.settings import Manifest

    assert Manifest.load(artifacts, built.name) == built.artifacts
    assert not list(artifacts.glob(".*.part"))


def test_a_tampered_object_stops_the_boot_before_anything_is_unpacked(
    published: tuple[Release, str], tmp_path: Path
) -> None:
    built, script = published
    _, wheels = built.objects
    s3 = boto3.client("s3", region_name="ap-northeast-2")
    s3.put_object(Bucket=BUCKET, Key=wheels["key"], Body=b"not the wheels")  # same key
    artifacts, proc = boot(script, tmp_path)
    assert proc.returncode != 0
    assert f"jobtory: {wheels['file']} ({wheels['key']}) sha256 mismatch" in proc.stderr
    assert "stopping the boot" in proc.stderr
    assert list(artifacts.iterdir()) == []  # not even the good code object is in place
    assert f"release {built.name} verified" not in proc.stdout


def test_a_manifest_other_than_the_user_data_names_stops_the_boot(
    published: tuple[Release, str], tmp_path: Path
) -> None:
    built, script = published
    s3 = boto3.client("s3", region_name="ap-northeast-2")
    key = f"releases/{built.name}/manifest.json"
    other = built.manifest.replace(b'"dirty": false', b'"dirty": true')
    s3.put_object(Bucket=BUCKET, Key=key, Body=other)
    artifacts, proc = boot(script, tmp_path)
    assert proc.returncode != 0
    assert f"jobtory: manifest {key} sha256 mismatch" in proc.stderr
    assert f"the user data expects {built.manifest_sha256}" in proc.stderr
    assert list(artifacts.iterdir()) == []


def test_files_already_on_the_host_are_used_only_when_their_sha256_matches(
    published: tuple[Release, str], tmp_path: Path
) -> None:
    """A baked image's artifacts are used as they are when they verify (the store is then
    not read for them), and fetched again when they do not."""
    built, script = published
    code, wheels = built.objects
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / wheels["file"]).write_bytes((built.out / wheels["file"]).read_bytes())
    (artifacts / code["file"]).write_bytes(b"a stale or damaged copy")
    s3 = boto3.client("s3", region_name="ap-northeast-2")
    s3.put_object(Bucket=BUCKET, Key=wheels["key"], Body=b"tampered, never read")
    _, proc = boot(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"jobtory: {wheels['file']} already here, sha256 verified" in proc.stdout
    assert f"jobtory: {code['file']} fetched, sha256 verified" in proc.stdout
    assert hashlib.sha256((artifacts / code["file"]).read_bytes()).hexdigest() == code["sha256"]


def test_no_published_release_says_so(aws_env: str, tmp_path: Path) -> None:
    script = render_user_data(
        "staging", "unreleased", bucket=BUCKET, region="ap-northeast-2", manifest_sha256=""
    )
    artifacts, proc = boot(script, tmp_path)
    assert proc.returncode != 0
    assert "jobtory: release unreleased: no manifest sha256 in the user data" in proc.stderr
    assert not artifacts.exists() or list(artifacts.iterdir()) == []
