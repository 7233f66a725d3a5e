"""hosts.strategy refresh: the StartInstanceRefresh request and the loop that follows it,
against the patched emulator, whose refresh status the test sets (as whatever carries
the refresh out would: the emulator replaces no instance itself); and one apply that
converges while a new instance profile propagates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from jobtory_stack.aws import reconcile, refresh
from jobtory_stack.aws.core import new_ctx, profile_not_propagated
from jobtory_stack.cli import main
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.loader import load_stack
from replica.moto_patches.instance_refresh import ENDPOINT
from tests.helpers import ROOT, stub_release

pytestmark = pytest.mark.aws

REGION = "ap-northeast-2"
ENV = "staging"
ASG = f"jobtory-{ENV}-asg"
Step = Callable[[], None]


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """The shipped spec, staging on the refresh strategy."""
    path = tmp_path / "stack.toml"
    text = (ROOT / "stack.toml").read_text()
    marker = "[environments.staging]\n"
    path.write_text(text.replace(marker, marker + 'hosts = { strategy = "refresh" }\n'))
    return path


@pytest.fixture
def applied(aws_env: str, spec: Path) -> str:
    assert main(["apply", "--spec", str(spec), "--env", ENV]) == 0
    return aws_env


def set_status(url: str, **body: Any) -> None:
    answer = httpx.post(
        f"{url}{ENDPOINT}", json={"AutoScalingGroupName": ASG, "region": REGION, **body}
    )
    assert answer.status_code == 200, answer.text


def group() -> Any:
    return client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])[
        "AutoScalingGroups"
    ][0]


def carried_out() -> None:
    """What the refresh does to the instances (the emulator does not): each one replaced
    by one launched from the group's configuration."""
    for instance in group()["Instances"]:
        client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance["InstanceId"], ShouldDecrementDesiredCapacity=False
        )


def apply_v2(spec: Path, steps: list[Step]) -> tuple[list[str], AwsError | None]:
    """apply with a new release; each poll of the follow loop runs the next step."""
    lines: list[str] = []
    ctx = new_ctx(load_stack(spec).env(ENV), out=lines.append)
    stub_release("v2", ENV)  # the release must be in the store: its sha256 is in the user data
    ctx.release = "v2"
    pending: Iterator[Step] = iter(steps)

    def sleep(_: float) -> None:
        next(pending)()

    ctx.sleep = sleep
    try:
        reconcile.apply(ctx)
    except AwsError as error:
        return lines, error
    return lines, None


def test_refresh_request_and_follow_to_success(applied: str, spec: Path) -> None:
    before = {i["InstanceId"] for i in group()["Instances"]}

    def success() -> None:
        set_status(applied, Status="Successful")  # the group takes the desired version
        carried_out()

    lines, error = apply_v2(
        spec,
        [
            lambda: set_status(applied, Status="InProgress", PercentageComplete=0),
            lambda: set_status(applied, Status="InProgress", PercentageComplete=50),
            success,
        ],
    )
    assert error is None, lines
    [started] = client("autoscaling").describe_instance_refreshes(AutoScalingGroupName=ASG)[
        "InstanceRefreshes"
    ]
    assert started["Preferences"] == {
        "MinHealthyPercentage": 100,
        "MaxHealthyPercentage": 200,
        "CheckpointPercentages": [50, 100],
        "CheckpointDelay": refresh.PREFERENCES["CheckpointDelay"],
        "AutoRollback": True,
        "SkipMatching": True,
    }
    assert started["Strategy"] == "Rolling"
    desired = started["DesiredConfiguration"]["LaunchTemplate"]
    assert (desired["LaunchTemplateId"], desired["Version"]) == (
        group()["LaunchTemplate"]["LaunchTemplateId"],
        "2",
    )
    refresh_id = started["InstanceRefreshId"]
    followed = [line for line in lines if line.startswith(f"  instance refresh {refresh_id}: ")]
    statuses = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in followed]
    assert statuses == [
        "Pending 0%, 1 instance(s) to update",
        "InProgress 0%, 1 instance(s) to update",
        "InProgress 50%, 1 instance(s) to update",
        "Successful 100%, 0 instance(s) to update",
    ]
    assert group()["LaunchTemplate"]["Version"] == "2"
    assert not {i["InstanceId"] for i in group()["Instances"]} & before
    assert main(["plan", "--spec", str(spec), "--env", ENV]) == 0  # converged
    plan = reconcile.plan(new_ctx(load_stack(spec).env(ENV)))
    assert plan.changes == ()


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("RollbackSuccessful", "it failed and AWS rolled the group back to its previous instances"),
        ("Failed", "it failed and was not rolled back"),
        ("Cancelled", "it was cancelled"),
    ],
)
def test_a_refresh_that_ends_badly_is_a_clear_error(
    applied: str, spec: Path, status: str, said: str
) -> None:
    lines, error = apply_v2(
        spec,
        [
            lambda: set_status(applied, Status="InProgress", PercentageComplete=50),
            lambda: set_status(applied, Status=status, StatusReason="health checks failed"),
        ],
    )
    assert error is not None, lines
    assert f"ended {status}: {said}: health checks failed" in str(error)
    assert group()["LaunchTemplate"]["Version"] == "1"  # AWS moves it only on success


def test_a_refresh_already_running_is_followed_not_doubled(applied: str, spec: Path) -> None:
    template = group()["LaunchTemplate"]["LaunchTemplateId"]
    running = client("autoscaling").start_instance_refresh(**refresh.request(ASG, template, "1"))[
        "InstanceRefreshId"
    ]
    lines, error = apply_v2(spec, [lambda: set_status(applied, Status="Successful")])
    assert error is None, lines
    assert any(f"already running: following {running}" in line for line in lines)
    found = client("autoscaling").describe_instance_refreshes(AutoScalingGroupName=ASG)
    assert len(found["InstanceRefreshes"]) == 1


def test_follow_times_out_with_the_refresh_still_running(applied: str, spec: Path) -> None:
    ctx = new_ctx(load_stack(spec).env(ENV), out=lambda _: None)
    now = [0.0]
    ctx.clock = lambda: now[0]
    ctx.sleep = lambda seconds: now.__setitem__(0, now[0] + 600)
    template = group()["LaunchTemplate"]["LaunchTemplateId"]
    refresh_id = refresh.start(ctx, refresh.request(ASG, template, "1"))
    with pytest.raises(AwsError, match=r"timed out after 1800s .* \(still Pending 0%"):
        refresh.follow(ctx, ASG, refresh_id, timeout=1800)


# ---- a new instance profile propagating ------------------------------------------------------


def profile_error(operation: str) -> ClientError:
    message = "Invalid IAM Instance Profile name"
    return ClientError({"Error": {"Code": "ValidationError", "Message": message}}, operation)


def test_profile_propagation_is_recognised() -> None:
    assert profile_not_propagated(profile_error("CreateAutoScalingGroup"))
    ec2 = ClientError(
        {
            "Error": {
                "Code": "InvalidParameterValue",
                "Message": "Value (x) for parameter "
                "iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
            }
        },
        "RunInstances",
    )
    assert profile_not_propagated(ec2)
    other = ClientError({"Error": {"Code": "ValidationError", "Message": "MinSize"}}, "X")
    assert not profile_not_propagated(other)


def test_one_apply_converges_while_the_instance_profile_propagates(
    aws_env: str,
    client_hook: Callable[[Callable[[Any], None]], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused: list[str] = []

    def not_yet(model: Any, **_: Any) -> None:  # AWS, seconds after CreateInstanceProfile
        if model.name == "CreateAutoScalingGroup" and len(refused) < 2:
            refused.append(model.name)
            raise profile_error(model.name)

    client_hook(lambda c: c.meta.events.register("before-call", not_yet))
    spec = ["--spec", str(ROOT / "stack.toml"), "--env", ENV]
    assert main(["apply", *spec]) == 0
    out = capsys.readouterr().out
    assert refused == ["CreateAutoScalingGroup"] * 2
    assert out.count("the new instance profile is propagating, retrying") == 2
    assert f"+ autoscaling_group {ASG}" in out
    assert main(["plan", *spec]) == 0
    assert capsys.readouterr().out.strip().endswith("No changes.")
