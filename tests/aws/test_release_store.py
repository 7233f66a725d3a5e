"""The release store's bucket (aws.store) and the instance role's read of it, against a
real moto server process."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from jobtory_stack.aws import reconcile, scaling, store
from jobtory_stack.aws.core import READ_PREFIXES, Ctx, new_ctx
from jobtory_stack.aws.family import Teardown
from jobtory_stack.aws.plan import REFUSED
from jobtory_stack.cli import main
from jobtory_stack.hosts import settings
from jobtory_stack.hosts import store as hosts_store
from jobtory_stack.hosts.release import build_named
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT
from tests.unit.test_release_build import commit_all, fake_checkout

pytestmark = pytest.mark.aws

SPEC = ROOT / "stack.toml"
ACCOUNT = "123456789012"  # moto's
BUCKET = f"jobtory-staging-releases-{ACCOUNT}"


def ctx_for(env_name: str = "staging", lines: list[str] | None = None) -> Ctx:
    env = load_stack(SPEC).env(env_name)
    return new_ctx(env, out=lines.append if lines is not None else lambda line: None)


def apply_store(ctx: Ctx) -> list[str]:
    """Plan and apply the store family alone; the titles of what it changed."""
    changes = store.plan(ctx)
    for change in changes:
        store.apply(ctx, change)
    return [c.title for c in changes]


def test_apply_creates_a_private_versioned_encrypted_bucket(aws_env: str) -> None:
    ctx = ctx_for()
    assert apply_store(ctx) == [f"create s3_bucket {BUCKET}"]
    client = boto3.client("s3", region_name="ap-northeast-2")
    block = client.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert client.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    rules = client.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules["Rules"]] == [
        "AES256"
    ]
    (rule,) = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}  # the spec's default
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    ownership = client.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    tags = {t["Key"]: t["Value"] for t in client.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags == {"stack": "jobtory", "env": "staging"}

    again = ctx_for()
    assert store.plan(again) == []
    assert [m for m in again.mutations if not m.startswith(READ_PREFIXES)] == []
    assert store.status(again) == [f"release store: s3://{BUCKET} 0 release(s)"]


def test_drift_is_planned_and_fixed(aws_env: str) -> None:
    apply_store(ctx_for())
    client = boto3.client("s3", region_name="ap-northeast-2")
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    client.delete_public_access_block(Bucket=BUCKET)
    client.delete_bucket_lifecycle(Bucket=BUCKET)

    ctx = ctx_for()
    (change,) = store.plan(ctx)
    assert change.action == "update"
    assert set(change.diffs) == {
        "public_access_block: (none) -> all on",
        "versioning: Suspended -> Enabled",
        "lifecycle: (none) -> noncurrent versions expire after 30 days",
    }
    assert set(change.params) == {
        "PutPublicAccessBlock",
        "PutBucketVersioning",
        "PutBucketLifecycleConfiguration",
    }
    assert "differs from the spec" in store.status(ctx)[0]
    store.apply(ctx, change)
    assert store.plan(ctx_for()) == []


def test_an_untagged_bucket_is_adopted_only_when_asked_in_a_protected_env(aws_env: str) -> None:
    bucket = f"jobtory-prod-releases-{ACCOUNT}"
    client = boto3.client("s3", region_name="ap-northeast-2")
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"}
    )
    client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    ctx = ctx_for("prod")
    (change,) = store.plan(ctx)
    assert "tags: (none) -> stack, env, adopted=true" in change.diffs[-1]
    from jobtory_stack.aws.core import refuse_takeovers
    from jobtory_stack.errors import AwsError

    with pytest.raises(AwsError, match="--adopt-existing"):
        refuse_takeovers(ctx, [change])
    store.apply(ctx, change)
    tags = {t["Key"]: t["Value"] for t in client.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"team": "a", "stack": "jobtory", "env": "prod", "adopted": "true"}
    # destroy keeps what was adopted unless asked
    lines: list[str] = []
    assert store.destroy_plan(ctx_for("prod", lines), Teardown()) == []
    assert any("kept: s3_bucket" in line for line in lines)


def put(bucket: str, key: str, body: bytes = b"x") -> None:
    boto3.client("s3", region_name="ap-northeast-2").put_object(Bucket=bucket, Key=key, Body=body)


def test_destroy_empties_an_unprotected_store(aws_env: str) -> None:
    apply_store(ctx_for())
    put(BUCKET, "releases/a/manifest.json")
    put(BUCKET, "releases/a/manifest.json", b"y")  # two versions
    put(BUCKET, "elsewhere")
    ctx = ctx_for()
    (change,) = store.destroy_plan(ctx, Teardown())
    assert change.diffs == ("objects: 3 version(s) deleted with it (every release in it)",)
    store.destroy_apply(ctx, change)
    with pytest.raises(ClientError, match="404"):
        boto3.client("s3", region_name="ap-northeast-2").head_bucket(Bucket=BUCKET)


def test_a_protected_store_is_never_emptied_without_the_flag(aws_env: str) -> None:
    bucket = f"jobtory-prod-releases-{ACCOUNT}"
    apply_store(ctx_for("prod"))
    put(bucket, "releases/a/manifest.json")
    (refused,) = store.destroy_plan(ctx_for("prod"), Teardown())
    assert "prod is protected" in refused.params[REFUSED]
    assert "--remove-deletion-protection" in refused.params[REFUSED]
    # the whole destroy stops before its first call
    with pytest.raises(Exception, match="never empties its release store"):
        reconcile.refuse(reconcile.Plan((refused,)))

    ctx = ctx_for("prod")
    (change,) = store.destroy_plan(ctx, Teardown(remove_deletion_protection=True))
    store.destroy_apply(ctx, change)
    assert store.status(ctx_for("prod"))[0].startswith("release store: none")


def test_an_empty_store_is_deleted_in_a_protected_env(aws_env: str) -> None:
    apply_store(ctx_for("prod"))
    ctx = ctx_for("prod")
    (change,) = store.destroy_plan(ctx, Teardown())
    assert set(change.params) == {"DeleteBucket"}


# ---- the instance role ------------------------------------------------------------------------


def assume_instance_role(ctx: Ctx) -> dict[str, str]:
    """The instance role as aws.scaling defines it (its policy is the repo's), assumed the
    way EC2 does for an instance. moto's AssumeRole fails (500) on a trust policy that
    names a Service principal, so the test role trusts the account; the permissions
    policy is the one under test."""
    iam = boto3.client("iam", region_name="ap-northeast-2")
    role = "jobtory-staging-ec2"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    policy = scaling.role_policy(ctx, ACCOUNT)
    iam.put_role_policy(RoleName=role, PolicyName="ssm-read", PolicyDocument=json.dumps(policy))
    sts = boto3.client("sts", region_name="ap-northeast-2")
    found = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="i-1")
    return found["Credentials"]


def test_the_instance_role_reads_only_the_releases_prefix(aws_env: str) -> None:
    ctx = ctx_for()
    apply_store(ctx)
    put(BUCKET, "releases/objects/sha256/abc", b"code")
    put(BUCKET, "secrets/elsewhere", b"not for hosts")
    other = f"jobtory-prod-releases-{ACCOUNT}"  # another environment's store
    apply_store(ctx_for("prod"))
    put(other, "releases/objects/sha256/abc", b"prod's")
    (statement,) = [
        s for s in scaling.role_policy(ctx, ACCOUNT)["Statement"] if s["Sid"] == "ReadReleases"
    ]
    assert statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}/releases/*"
    credentials = assume_instance_role(ctx)

    httpx.post(f"{aws_env}/moto-api/reset-auth", content=b"0", timeout=10)
    try:
        role = boto3.client(
            "s3",
            region_name="ap-northeast-2",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        body = role.get_object(Bucket=BUCKET, Key="releases/objects/sha256/abc")["Body"].read()
        assert body == b"code"
        for denied in (
            lambda: role.get_object(Bucket=BUCKET, Key="secrets/elsewhere"),
            lambda: role.get_object(Bucket=other, Key="releases/objects/sha256/abc"),
            lambda: role.put_object(Bucket=BUCKET, Key="releases/objects/sha256/x", Body=b"x"),
            lambda: role.list_objects_v2(Bucket=BUCKET, Prefix="releases/"),
            lambda: role.delete_object(Bucket=BUCKET, Key="releases/objects/sha256/abc"),
        ):
            with pytest.raises(ClientError, match="AccessDenied"):
                denied()
    finally:
        httpx.post(f"{aws_env}/moto-api/reset-auth", content=b"inf", timeout=10)


# ---- publish / list / prune ---------------------------------------------------------------


def put_objects(calls: list[tuple[str, str]]) -> list[str]:
    return [key for op, key in calls if op == "PutObject"]


@pytest.fixture
def s3_calls(client_hook: Callable[[Callable[[Any], None]], None]) -> list[tuple[str, str]]:
    """(operation, key) of every S3 call made through the deployer's clients."""
    seen: list[tuple[str, str]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        seen.append((model.name, str(params.get("Key", ""))))

    client_hook(lambda c: c.meta.events.register("before-parameter-build.s3", record))
    return seen


def test_publishing_twice_uploads_once(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_calls: list[tuple[str, str]]
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    apply_store(ctx_for())
    built = build_named(repo, out, repo)
    code, wheels = built.objects
    done = hosts_store.publish(ctx_for(), built)
    manifest_key = f"releases/{built.name}/manifest.json"
    assert put_objects(s3_calls) == [code["key"], wheels["key"], manifest_key]
    assert done.uploaded_bytes == code["size"] + wheels["size"] + len(built.manifest)
    client = boto3.client("s3", region_name="ap-northeast-2")
    stored = client.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == built.manifest_sha256 == done.manifest_sha256
    body = client.get_object(Bucket=BUCKET, Key=code["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == code["sha256"]

    s3_calls.clear()
    again = hosts_store.publish(ctx_for(), build_named(repo, out, repo))
    assert put_objects(s3_calls) == [] and again.uploaded == ()
    assert again.present == (code["key"], wheels["key"], manifest_key)


def test_a_code_only_change_uploads_only_the_code_object(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_calls: list[tuple[str, str]]
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    apply_store(ctx_for())
    hosts_store.publish(ctx_for(), build_named(repo, out, repo))
    (repo / "app" / "manage.py").write_text("# a fix\n")
    commit_all(repo)
    s3_calls.clear()
    built = build_named(repo, out, repo)
    hosts_store.publish(ctx_for(), built)
    code, _ = built.objects
    assert put_objects(s3_calls) == [code["key"], f"releases/{built.name}/manifest.json"]


def test_publish_needs_the_store_and_says_how(
    aws_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    monkeypatch.setattr(settings, "ARTIFACTS_DIR", out)
    code = main(["release", "publish", "--spec", str(SPEC), "--env", "staging",
                 "--source", str(repo)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: the release store s3://{BUCKET} does not exist: create it with "
        "`deploy.py apply --env staging` first"
    )
    assert list(out.glob("src-*")) == []  # refused before the build


def test_the_cli_publishes_lists_and_errors_in_one_line(
    aws_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    monkeypatch.setattr(settings, "ARTIFACTS_DIR", out)
    apply_store(ctx_for())
    argv = ["--spec", str(SPEC), "--env", "staging"]
    assert main(["release", "publish", *argv, "--source", str(repo)]) == 0
    printed = capsys.readouterr().out
    built = build_named(repo, out, repo)
    assert f"manifest sha256 {built.manifest_sha256}" in printed
    assert "3 uploaded" in printed
    assert main(["release", "publish", *argv, "--source", str(repo), "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()  # stdout: the JSON alone
    row = json.loads(line)
    assert row["uploaded"] == [] and row["manifest_sha256"] == built.manifest_sha256

    assert main(["release", "list", *argv]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == f"# s3://{BUCKET}: 1 release(s), newest first"
    assert listed[1].startswith(built.name) and "referenced" not in listed[1]
    assert main(["release", "list", *argv, "--keep-release", built.name]) == 0
    assert "referenced: --keep-release" in capsys.readouterr().out

    # an AWS failure (moto checking credentials: these are no IAM user's): one line
    httpx.post(f"{aws_env}/moto-api/reset-auth", content=b"0", timeout=10)
    try:
        assert main(["release", "list", *argv]) == 1
    finally:
        httpx.post(f"{aws_env}/moto-api/reset-auth", content=b"inf", timeout=10)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: AWS rejected the credentials"), err
    assert not any("Traceback" in line for line in err)


def publish_commits(repo: Path, out: Path, count: int, clock: list[datetime]) -> list[str]:
    """`count` releases, one commit each, published in order."""
    names = []
    for i in range(count):
        (repo / "app" / "manage.py").write_text(f"# release {i}\n")
        commit_all(repo, f"release {i}")
        built = build_named(repo, out, repo)
        hosts_store.publish(ctx_for(), built)
        names.append(built.name)
        time.sleep(1.1)  # S3 dates have a resolution of a second: an order to go by
    clock.append(datetime.now(UTC) + timedelta(hours=2))  # past prune's grace
    return names


def test_prune_keeps_the_newest_and_every_referenced_release(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    apply_store(ctx_for())
    clock: list[datetime] = []
    oldest, middle, second, newest = publish_commits(repo, out, 4, clock)
    # the launch template still has a version booting the oldest (a scale-out boots it)
    ec2 = boto3.client("ec2", region_name="ap-northeast-2")
    script = f"#!/bin/bash\nVERSION={oldest}\n"
    ec2.create_launch_template(
        LaunchTemplateName="jobtory-staging-lt",
        LaunchTemplateData={"UserData": base64.b64encode(script.encode()).decode()},
    )
    ctx = ctx_for()
    plan = hosts_store.prune_plan(ctx, keep=1, also_referenced={second: "rollback target"},
                                  now=clock[0])  # fmt: skip
    assert [r.name for r in plan.releases] == [middle]
    assert {r.name: r.referenced_by for r in plan.kept} == {
        second: "rollback target",
        oldest: "jobtory-staging-lt v1 (default)",
    }
    middle_code = f"releases/objects/sha256/{middle.split('-')[1]}"
    (gone,) = [key for key, _ in plan.objects]  # only the middle one's code: no one else's
    assert gone.startswith(middle_code)
    hosts_store.prune(ctx, plan)

    listed = hosts_store.stored_releases(ctx, BUCKET, {})
    assert [r.name for r in listed] == [newest, second, oldest]
    client = boto3.client("s3", region_name="ap-northeast-2")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert gone not in keys
    for r in listed:  # every remaining release still has all of its objects
        assert {o["key"] for o in r.objects} <= keys
    # the pruned objects are still there as noncurrent versions (recoverable)
    assert client.list_object_versions(Bucket=BUCKET, Prefix=gone)["Versions"]

    # within the grace period, an object no manifest lists yet is never deleted
    assert hosts_store.prune_plan(ctx_for(), keep=1, also_referenced={second: "r"}).objects == ()
