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
from jobtory_stack.errors import HostsError
from jobtory_stack.hosts import launch, rolling
from jobtory_stack.hosts.launch import move_launch_template
from jobtory_stack.hosts.lock import parameter_names
from jobtory_stack.hosts.release import build_named
from jobtory_stack.hosts.settings import DeployOptions
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


def test_a_static_inventory_publishes_nothing_and_makes_no_aws_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fleet replica (`local`: hosts from a static inventory) is deployed over SSH
    alone: its emulator has no release store (and may have a group: migrate's step 6), so
    nothing is built for the store, published or moved, and no AWS client is made."""
    env = load_stack(SPEC).env("local")
    assert env.hosts.inventory

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a static inventory made an AWS call or published")

    for name in ("new_ctx", "build_named", "has_group", "local_release"):
        monkeypatch.setattr(launch, name, refused)
    monkeypatch.setattr(launch.store, "publish", refused)
    for options in (DeployOptions(spec=SPEC), DeployOptions(spec=SPEC, version="r0123456789")):
        assert launch.prepare_release(env, options, out=refused) is options
    assert move_launch_template(env, "r0123456789", out=refused) is None


def test_the_deploy_moves_the_launch_template_once_it_holds_the_lock(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare_release publishes before the lock and moves nothing; rolling.deploy moves
    the launch template after it took the lock, before any host."""
    assert main(["apply", "--spec", str(SPEC), "--env", "staging"]) == 0
    before_version, before_script = default_script()
    repo, out = fake_checkout(tmp_path, monkeypatch)
    built = build_named(repo, out, repo)
    monkeypatch.setattr(launch, "local_release", lambda name: built if name == built.name else None)
    env = load_stack(SPEC).env("staging")
    lines: list[str] = []

    options = launch.prepare_release(
        env, DeployOptions(spec=SPEC, version=built.name), lines.append
    )
    assert options.version == built.name and options.launch_template
    store = ctx_for()
    assert launch.scaling.manifest_sha256(store, built.name) == built.manifest_sha256  # published
    assert default_script() == (before_version, before_script)  # not moved before the lock

    lock_name, _ = parameter_names(env.stack_name, env.name)
    ssm = client("ssm")
    seen: dict[str, Any] = {}
    real_move = rolling.move_launch_template

    def move(*args: Any, **kwargs: Any) -> int | None:
        seen["lock"] = ssm.get_parameter(Name=lock_name)["Parameter"]["Value"]
        return real_move(*args, **kwargs)

    def no_hosts(*args: Any, **kwargs: Any) -> Any:
        seen["template"] = default_script()
        raise HostsError("stop before any host")

    monkeypatch.setattr(rolling, "move_launch_template", move)
    monkeypatch.setattr(rolling, "fleet_of", no_hosts)
    monkeypatch.setattr(rolling, "db_ca_bundle", lambda env, spec: None)  # not the subject
    with pytest.raises(rolling.DeployFailed, match="stop before any host"):
        rolling.deploy(env, options, lines.append)
    assert built.name in seen["lock"]  # the lock was held when the template moved
    number, script = seen["template"]  # moved before the hosts were looked up
    assert number == before_version + 1 and f"\nVERSION={built.name}\n" in script
    assert f"launch template: v{number} boots {built.name}" in lines
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=lock_name)  # released

    # without launch_template (an env without a group, migrate's step 7): never moved
    seen.clear()
    with pytest.raises(rolling.DeployFailed):
        rolling.deploy(env, DeployOptions(spec=SPEC, version=built.name), lines.append)
    assert "lock" not in seen and default_script()[0] == number
