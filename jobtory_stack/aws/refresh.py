"""An Auto Scaling instance refresh: the request and the loop that follows it.

The `refresh` strategy (hosts.strategy) replaces the fleet's instances with ones booted
from a launch-template version, by AWS itself:

- MinHealthyPercentage 100 with MaxHealthyPercentage 200: never below the desired
  capacity; new instances are launched (and healthy) before old ones terminate (AWS
  needs Max explicitly above 100 when Min is 100, within 100 of it)
- checkpoints at 50% and 100%, each followed by a pause (CheckpointDelay) in which a bad
  half can still be caught before the other half goes
- AutoRollback: a failed refresh puts the previous instances back
- SkipMatching: instances already on the desired configuration stay
- DesiredConfiguration names the launch-template VERSION (numbered, as AutoRollback
  needs); AWS moves the group to it only once the refresh succeeds

`follow` polls DescribeInstanceRefreshes (ctx.sleep / ctx.clock, injectable) and prints
each change of status, percentage or instances to update, until a final status. Only
Successful returns; Failed, Cancelled and the rollback outcomes are one-line errors.
"""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import NO_RETRY_CONFIG, error_code
from jobtory_stack.aws.core import Ctx
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import REFRESH_TIMEOUT

PREFERENCES: dict[str, Any] = {
    "MinHealthyPercentage": 100,
    "MaxHealthyPercentage": 200,
    "CheckpointPercentages": [50, 100],
    "CheckpointDelay": 120,
    "AutoRollback": True,
    "SkipMatching": True,
}
SUCCESSFUL = "Successful"
FAILED = frozenset({"Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"})
WHY = {
    "Failed": "it failed and was not rolled back",
    "Cancelled": "it was cancelled",
    "RollbackSuccessful": "it failed and AWS rolled the group back to its previous instances",
    "RollbackFailed": "it failed and so did its rollback: check the group's instances",
}


def request(asg: str, template: Any, version: Any) -> dict[str, Any]:
    """StartInstanceRefresh's parameters (template and version may be Refs)."""
    return {
        "AutoScalingGroupName": asg,
        "Strategy": "Rolling",
        "DesiredConfiguration": {
            "LaunchTemplate": {"LaunchTemplateId": template, "Version": version}
        },
        "Preferences": PREFERENCES,
    }


def start(ctx: Ctx, args: dict[str, Any]) -> str:
    """Start it (tried once: a retried start could start a second one). One already
    running is refused by AWS (InstanceRefreshInProgress): that one is followed."""
    asg = args["AutoScalingGroupName"]
    no_retry = ctx.client("autoscaling", config=NO_RETRY_CONFIG)
    try:
        refresh_id = str(no_retry.start_instance_refresh(**args)["InstanceRefreshId"])
    except ClientError as exc:
        if error_code(exc) != "InstanceRefreshInProgress":
            raise
        running = latest(ctx, asg)
        if running is None:
            raise
        refresh_id = str(running["InstanceRefreshId"])
        ctx.report.note(f"! {asg}: an instance refresh is already running: following {refresh_id}")
        return refresh_id
    version = args["DesiredConfiguration"]["LaunchTemplate"]["Version"]
    ctx.report.line(
        f"  ~ autoscaling_group {asg}: instance refresh {refresh_id} started "
        f"(to launch template v{version}, min healthy 100%, checkpoints 50/100%, auto rollback)"
    )
    return refresh_id


def latest(ctx: Ctx, asg: str) -> dict[str, Any] | None:
    found = ctx.autoscaling.describe_instance_refreshes(AutoScalingGroupName=asg, MaxRecords=1)
    refreshes = found.get("InstanceRefreshes", [])
    return dict(refreshes[0]) if refreshes else None


def describe(ctx: Ctx, asg: str, refresh_id: str) -> dict[str, Any]:
    found = ctx.autoscaling.describe_instance_refreshes(
        AutoScalingGroupName=asg, InstanceRefreshIds=[refresh_id]
    )["InstanceRefreshes"]
    if not found:
        raise AwsError(f"instance refresh {refresh_id} of {asg} is gone")
    return dict(found[0])


def progress(refresh: dict[str, Any]) -> str:
    line = f"{refresh.get('Status')} {refresh.get('PercentageComplete', 0)}%"
    if refresh.get("InstancesToUpdate") is not None:
        line += f", {refresh['InstancesToUpdate']} instance(s) to update"
    if refresh.get("StatusReason"):
        line += f" ({refresh['StatusReason']})"
    return line


def follow(ctx: Ctx, asg: str, refresh_id: str, timeout: float | None = None) -> None:
    """Until the refresh finishes: progress on every change (and every progress_seconds),
    bounded by `timeout` (REFRESH_TIMEOUT, JOBTORY_REFRESH_TIMEOUT)."""
    limit = timeout or float(os.environ.get("JOBTORY_REFRESH_TIMEOUT", REFRESH_TIMEOUT))
    start_at = ctx.clock()
    shown, shown_at = "", 0.0
    while True:
        refresh = describe(ctx, asg, refresh_id)
        status, line = str(refresh.get("Status")), progress(refresh)
        elapsed = ctx.clock() - start_at
        if line != shown or elapsed - shown_at >= ctx.progress_seconds:
            ctx.report.line(f"  instance refresh {refresh_id}: {line} ({elapsed:.0f}s)")
            shown, shown_at = line, elapsed
        if status == SUCCESSFUL:
            return
        if status in FAILED:
            reason = f": {refresh['StatusReason']}" if refresh.get("StatusReason") else ""
            raise AwsError(
                f"the instance refresh {refresh_id} of {asg} ended {status}: "
                f"{WHY[status]}{reason}; see `deploy.py status` and the group's scaling "
                "activities, fix, then run apply again"
            )
        if elapsed >= limit:
            raise AwsError(
                f"timed out after {limit:.0f}s following the instance refresh {refresh_id} "
                f"of {asg} (still {line}); it goes on in AWS: `deploy.py status` shows it, "
                "and the next apply follows it"
            )
        ctx.sleep(ctx.poll)
