"""Instance refresh for Auto Scaling groups (moto 5.2.5 has none: HTTP 500).

Adds StartInstanceRefresh, DescribeInstanceRefreshes, CancelInstanceRefresh and
RollbackInstanceRefresh. A refresh is stored with its request (Strategy, Preferences,
DesiredConfiguration) and starts `Pending`; moto replaces no instance itself. What
carries a refresh out (a test, the replica's ASG controller) moves its status with
`set_status` or, from outside the server process,

    POST /moto-api/autoscaling/instance-refresh
    {"AutoScalingGroupName": "...", "Status": "InProgress", "PercentageComplete": 50,
     "InstancesToUpdate": 1, "StatusReason": "...", "InstanceRefreshId": "..." (optional:
     the group's latest), "region": "ap-northeast-2", "account": "123456789012"}

As on AWS: a second refresh while one is active is refused (InstanceRefreshInProgress);
MaxHealthyPercentage needs MinHealthyPercentage within 100 of it; CheckpointDelay needs
CheckpointPercentages (ascending, unique, 1..100); AutoRollback needs a desired
configuration and a numbered launch-template version on the group; on `Successful` the
group takes the desired configuration ("Once the instance refresh succeeds, Amazon EC2
Auto Scaling updates the settings of the Auto Scaling group").

Upstream: moto/autoscaling/models.py (a FakeInstanceRefresh, the backend methods) and
moto/autoscaling/responses.py (the four actions); the status setter would be a
moto-api endpoint in moto/moto_api/_internal/urls.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup, autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.moto_api._internal import urls as moto_api_urls

ACTIVE = frozenset({"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"})
FINISHED = frozenset({"Successful", "Failed", "Cancelled", "RollbackFailed", "RollbackSuccessful"})
STATUSES = ACTIVE | FINISHED
ENDPOINT = "/moto-api/autoscaling/instance-refresh"
_STORE = "_jobtory_instance_refreshes"


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"
    message = (
        "An Instance Refresh is already in progress and blocks the execution of this "
        "Instance Refresh."
    )


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    code = "ActiveInstanceRefreshNotFound"


class IrreversibleInstanceRefresh(AutoscalingClientError):
    code = "IrreversibleInstanceRefresh"


@dataclass
class InstanceRefresh:
    group: str
    strategy: str
    preferences: dict[str, Any]
    desired_configuration: dict[str, Any] | None
    instances_to_update: int
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "Pending"
    status_reason: str | None = None
    percentage_complete: int = 0
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    end_time: datetime | None = None

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": self.percentage_complete,
            "InstancesToUpdate": self.instances_to_update,
            "Preferences": self.preferences,
            "Strategy": self.strategy,
        }
        if self.status_reason:
            found["StatusReason"] = self.status_reason
        if self.end_time:
            found["EndTime"] = self.end_time
        if self.desired_configuration:
            found["DesiredConfiguration"] = self.desired_configuration
        return found


def refreshes(backend: AutoScalingBackend, group: str) -> list[InstanceRefresh]:
    """The group's refreshes, newest first (kept on the backend: a reset forgets them)."""
    store: dict[str, list[InstanceRefresh]] = backend.__dict__.setdefault(_STORE, {})
    return store.setdefault(group, [])


def _group(backend: AutoScalingBackend, name: str) -> FakeAutoScalingGroup:
    if name not in backend.autoscaling_groups:
        raise ValidationError(f"AutoScalingGroup name not found - {name}")
    return backend.autoscaling_groups[name]


def _active(backend: AutoScalingBackend, name: str) -> InstanceRefresh | None:
    return next((r for r in refreshes(backend, name) if r.status in ACTIVE), None)


def check_preferences(
    prefs: dict[str, Any], desired: dict[str, Any] | None, group: FakeAutoScalingGroup
) -> None:
    low, high = prefs.get("MinHealthyPercentage"), prefs.get("MaxHealthyPercentage")
    if low is not None and not 0 <= int(low) <= 100:
        raise ValidationError("MinHealthyPercentage must be between 0 and 100.")
    if high is not None:
        if not 100 <= int(high) <= 200:
            raise ValidationError("MaxHealthyPercentage must be between 100 and 200.")
        if low is None or int(high) - int(low) > 100:
            raise ValidationError(
                "MaxHealthyPercentage needs MinHealthyPercentage, and the difference "
                "between them cannot be greater than 100."
            )
    checkpoints = [int(p) for p in prefs.get("CheckpointPercentages") or []]
    if "CheckpointDelay" in prefs and not checkpoints:
        raise ValidationError("CheckpointDelay requires CheckpointPercentages.")
    if checkpoints and (
        checkpoints != sorted(set(checkpoints)) or not all(1 <= p <= 100 for p in checkpoints)
    ):
        raise ValidationError(
            "CheckpointPercentages must be unique, ascending values between 1 and 100."
        )
    if prefs.get("AutoRollback"):
        version = str(group.provided_launch_template_version or "$Default")
        if not desired or version.startswith("$"):
            raise ValidationError(
                "AutoRollback needs a DesiredConfiguration and a group on a numbered "
                "launch template version (not $Latest or $Default)."
            )


def start(
    backend: AutoScalingBackend,
    name: str,
    strategy: str = "Rolling",
    preferences: dict[str, Any] | None = None,
    desired_configuration: dict[str, Any] | None = None,
) -> InstanceRefresh:
    group = _group(backend, name)
    if _active(backend, name):
        raise InstanceRefreshInProgress()
    prefs = dict(preferences or {})
    check_preferences(prefs, desired_configuration, group)
    if "CheckpointPercentages" in prefs and "CheckpointDelay" not in prefs:
        prefs["CheckpointDelay"] = 3600  # AWS's default
    refresh = InstanceRefresh(
        name, strategy, prefs, desired_configuration, len(group.instance_states)
    )
    refreshes(backend, name).insert(0, refresh)
    return refresh


def set_status(
    backend: AutoScalingBackend,
    name: str,
    status: str,
    refresh_id: str | None = None,
    percentage_complete: int | None = None,
    instances_to_update: int | None = None,
    reason: str | None = None,
) -> InstanceRefresh:
    """Move a refresh (the group's latest unless `refresh_id`) to `status`, as the
    process carrying it out would; `Successful` applies its desired configuration."""
    if status not in STATUSES:
        raise ValidationError(f"unknown instance refresh status {status!r}")
    found = [r for r in refreshes(backend, name) if refresh_id in (None, r.id)]
    if not found:
        raise ActiveInstanceRefreshNotFound(f"No instance refresh {refresh_id or ''} for {name}")
    refresh = found[0]
    refresh.status = status
    refresh.status_reason = reason
    if percentage_complete is not None:
        refresh.percentage_complete = percentage_complete
    if instances_to_update is not None:
        refresh.instances_to_update = instances_to_update
    if status in FINISHED:
        refresh.end_time = datetime.now(UTC)
    if status == "Successful":
        refresh.percentage_complete, refresh.instances_to_update = 100, 0
        template = (refresh.desired_configuration or {}).get("LaunchTemplate")
        if template:
            _group(backend, name)._set_launch_configuration(None, template, None)  # type: ignore[arg-type]
    return refresh


def _active_or_refused(backend: AutoScalingBackend, name: str) -> InstanceRefresh:
    """The group's refresh in progress, else AWS's ActiveInstanceRefreshNotFound."""
    _group(backend, name)
    refresh = _active(backend, name)
    if refresh is None:
        raise ActiveInstanceRefreshNotFound(
            f"No in progress or pending Instance Refresh found for Auto Scaling group {name}"
        )
    return refresh


def cancel(backend: AutoScalingBackend, name: str) -> InstanceRefresh:
    refresh = _active_or_refused(backend, name)
    # moto replaces nothing itself: there is nothing to wait for in Cancelling
    return set_status(backend, name, "Cancelled", refresh.id, reason="Cancelled by request")


def rollback(backend: AutoScalingBackend, name: str) -> InstanceRefresh:
    refresh = _active_or_refused(backend, name)
    if not refresh.desired_configuration:
        raise IrreversibleInstanceRefresh(
            "A rollback needs an instance refresh started with a desired configuration."
        )
    return set_status(backend, name, "RollbackInProgress", refresh.id, reason="Rollback requested")


# ---- the API actions (AutoScalingResponse methods) -------------------------------------------


def start_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refresh = start(
        self.autoscaling_backend,
        self._get_param("AutoScalingGroupName"),
        self._get_param("Strategy") or "Rolling",
        self._get_param("Preferences"),
        self._get_param("DesiredConfiguration"),
    )
    return ActionResult({"InstanceRefreshId": refresh.id})


def describe_instance_refreshes(self: AutoScalingResponse) -> ActionResult:
    name = self._get_param("AutoScalingGroupName")
    wanted = self._get_param("InstanceRefreshIds") or []
    limit = int(self._get_param("MaxRecords") or 50)
    found = [r for r in refreshes(self.autoscaling_backend, name) if not wanted or r.id in wanted]
    return ActionResult({"InstanceRefreshes": [r.describe() for r in found[:limit]]})


def cancel_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refresh = cancel(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    return ActionResult({"InstanceRefreshId": refresh.id})


def rollback_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refresh = rollback(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
    return ActionResult({"InstanceRefreshId": refresh.id})


def status_endpoint(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """POST ENDPOINT: set a refresh's status from outside the server (see the docstring)."""
    body = json.loads(request.data or b"{}")
    account = body.get("account", DEFAULT_ACCOUNT_ID)
    backend = autoscaling_backends[account][body.get("region", "us-east-1")]
    try:
        refresh = set_status(
            backend,
            body["AutoScalingGroupName"],
            body["Status"],
            body.get("InstanceRefreshId"),
            body.get("PercentageComplete"),
            body.get("InstancesToUpdate"),
            body.get("StatusReason"),
        )
    except (AutoscalingClientError, KeyError) as exc:
        message = getattr(exc, "message", None) or repr(exc)
        return 400, {"Content-Type": "application/json"}, json.dumps({"error": message})
    return 200, {"Content-Type": "application/json"}, json.dumps({"InstanceRefreshId": refresh.id})


ACTIONS = {
    "start_instance_refresh": start_instance_refresh,
    "describe_instance_refreshes": describe_instance_refreshes,
    "cancel_instance_refresh": cancel_instance_refresh,
    "rollback_instance_refresh": rollback_instance_refresh,
}


def apply() -> None:
    for name, action in ACTIONS.items():
        setattr(AutoScalingResponse, name, action)
    moto_api_urls.url_paths["{0}" + ENDPOINT] = status_endpoint
