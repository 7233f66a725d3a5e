"""The release store's bucket (aws.store) and the instance role's read of it, against a
real moto server process."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from jobtory_stack.aws import reconcile, scaling, store
from jobtory_stack.aws.core import READ_PREFIXES, Ctx, new_ctx
from jobtory_stack.aws.family import Teardown
from jobtory_stack.aws.plan import REFUSED
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT

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
            lambda: role.put_object(Bucket=BUCKET, Key="releases/objects/sha256/x", Body=b"x"),
            lambda: role.list_objects_v2(Bucket=BUCKET, Prefix="releases/"),
            lambda: role.delete_object(Bucket=BUCKET, Key="releases/objects/sha256/abc"),
        ):
            with pytest.raises(ClientError, match="AccessDenied"):
                denied()
    finally:
        httpx.post(f"{aws_env}/moto-api/reset-auth", content=b"inf", timeout=10)
