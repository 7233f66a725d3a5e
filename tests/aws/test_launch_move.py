"""Every deploy moves the launch template (hosts.launch, aws.scaling.move_template), against
the patched moto: a new default version booting the release, the group moved to it, and
an instance the group launches from it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobtory_stack.aws import reconcile
from jobtory_stack.cli import main
from jobtory_stack.hosts.launch import move_launch_template
from jobtory_stack.hosts.release import build_named
from jobtory_stack.spec.loader import load_stack
from tests.aws.test_release_store import ctx_for
from tests.helpers import ROOT
from tests.unit.test_release_build import fake_checkout

pytestmark = pytest.mark.aws

SPEC = ROOT / "stack.toml"
ASG, LT = "jobtory-staging-asg", "jobtory-staging-lt"


def client(service: str) -> Any:
    return boto3.client(service, region_name="ap-northeast-2")  # type: ignore[call-overload]


def group() -> Any:
    return client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])[
        "AutoScalingGroups"
    ][0]


def default_script() -> tuple[int, str]:
    version = client("ec2").describe_launch_template_versions(
        LaunchTemplateName=LT, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    return version["VersionNumber"], base64.b64decode(
        version["LaunchTemplateData"]["UserData"]
    ).decode()


def test_a_deploy_moves_the_launch_template_and_the_group_launches_from_it(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["apply", "--spec", str(SPEC), "--env", "staging"]) == 0
    before_version, _ = default_script()
    before = {i["InstanceId"] for i in group()["Instances"]}
    repo, out = fake_checkout(tmp_path, monkeypatch)
    built = build_named(repo, out, repo)
    env = load_stack(SPEC).env("staging")
    lines: list[str] = []

    version = move_launch_template(env, built, out=lines.append)  # publishes it first
    assert version == before_version + 1
    number, script = default_script()
    assert number == version
    assert f"\nVERSION={built.name}\n" in script
    assert f"\nMANIFEST_SHA256={built.manifest_sha256}\n" in script
    assert group()["LaunchTemplate"]["Version"] == str(version)
    # the rest of the template as it was: a deploy never changes the AMI or the role
    versions = client("ec2").describe_launch_template_versions(
        LaunchTemplateName=LT, Versions=[str(before_version), str(version)]
    )["LaunchTemplateVersions"]
    old, new = sorted(versions, key=lambda v: v["VersionNumber"])
    for key in ("ImageId", "InstanceType", "IamInstanceProfile", "SecurityGroupIds"):
        assert old["LaunchTemplateData"][key] == new["LaunchTemplateData"][key]
    assert new["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"

    # idempotent: the same release again makes no version and no call that changes anything
    ctx = ctx_for()
    assert move_launch_template(env, built, out=lines.append, ctx=ctx) == version
    assert [m for m in ctx.mutations if m != "HeadObject"] == []  # HeadObject only reads
    assert f"launch_template {LT} v{version} already boots {built.name}" in lines

    # apply keeps what the deploy set: nothing to change, the release stays
    plan = reconcile.plan(ctx_for())
    assert not [c.title for c in plan if c.resource in ("launch_template", "autoscaling_group")]

    # a scale-out boots it: the patched emulator launches from the new version
    client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=ASG, DesiredCapacity=len(before) + 1
    )
    (added,) = {i["InstanceId"] for i in group()["Instances"]} - before
    tags = client("ec2").describe_instances(InstanceIds=[added])["Reservations"][0]["Instances"][0]
    assert {"Key": "aws:ec2launchtemplate:version", "Value": str(version)} in tags["Tags"]

    # status: each instance's health, launch-template version and release
    status = reconcile.status(ctx_for())
    (line,) = [s for s in status if s.strip().startswith(added)]
    assert f"lt v{version}, release {built.name}" in line and "InService" in line
    first = next(iter(before))
    (old_line,) = [s for s in status if s.strip().startswith(first)]
    assert f"lt v{before_version}, release unreleased (old template)" in old_line


def test_a_named_release_must_be_in_the_store(aws_env: str) -> None:
    assert main(["apply", "--spec", str(SPEC), "--env", "staging"]) == 0
    env = load_stack(SPEC).env("staging")
    from jobtory_stack.errors import AwsError

    with pytest.raises(AwsError, match=r"release 0123456789-abc is not in the release store"):
        move_launch_template(env, "0123456789-abc", out=lambda line: None)


def test_no_group_no_move(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment without an Auto Scaling group (the static fleet replica) is left
    to the SSH deploy: nothing is published or created."""
    env = load_stack(SPEC).env("staging")
    ctx = ctx_for()
    repo, out = fake_checkout(tmp_path, monkeypatch)
    assert move_launch_template(env, build_named(repo, out, repo), ctx=ctx) is None
    assert ctx.mutations == []
