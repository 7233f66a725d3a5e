"""The load balancer a rolling deploy drains hosts from: the ELBv2 target group, none
(Caddy's direct mode), or the fleet replica's ALB stand-in through its runtime API."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jobtory_stack.aws.client import client_for
from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.inventory import static_inventory
from jobtory_stack.hosts.standin import AlbRuntime
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.model import Environment


class Balancer(Protocol):
    name: str

    def health(self) -> dict[str, str]: ...

    def healthy(self, target: str) -> bool: ...

    def drain(self, target: str) -> None: ...

    def restore(self, target: str, timeout: float) -> None: ...


class NoBalancer:
    """Direct mode: each host's Caddy terminates TLS itself and no balancer is in front
    (today's single host). Nothing to drain: gunicorn's systemd socket holds connections
    while it restarts, and the activation's candidate check covers a new release."""

    name = "no balancer (caddy direct mode)"

    def health(self) -> dict[str, str]:
        return {}

    def healthy(self, target: str) -> bool:
        return True

    def drain(self, target: str) -> None:
        return None

    def restore(self, target: str, timeout: float) -> None:
        return None


class StandinBalancer:
    """The fleet replica's ALB stand-in, through its HAProxy runtime API."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.runtime = AlbRuntime(host, int(port))
        self.name = f"alb stand-in {address}"

    def health(self) -> dict[str, str]:
        """target -> healthy / unhealthy / draining / unused (as ELBv2 names them)."""
        return {t.name: t.health for t in self.runtime.targets()}

    def healthy(self, target: str) -> bool:
        return self.runtime.target(target).health == "healthy"

    def drain(self, target: str) -> None:
        self.runtime.deregister(target)

    def restore(self, target: str, timeout: float) -> None:
        self.runtime.register(target, wait=timeout > 0, timeout=timeout)


@dataclass
class Drained:
    """What drain() changed for one target, so that restore() undoes exactly that."""

    standby: bool = False  # EnterStandby was asked: ExitStandby
    lowered_min: int | None = None  # the ASG's MinSize before drain() lowered it


STANDBY_SETTLE = 120.0  # seconds an instance may stay EnteringStandby before ExitStandby


class ElbBalancer:
    """A real (or emulated) ALB target group: deregister / register + boto3 waiters.

    An instance that is InService in an Auto Scaling group attached to this target group
    is put on standby first (AWS's documented way to update an instance in place: no
    health-check replacement, no scale-in of it while it is out), with the desired
    capacity decremented, so the group launches no replacement. AWS refuses that
    decrement below MinSize, so when MinSize = desired, MinSize is lowered by one for
    the standby and put back after ExitStandby. The explicit Deregister/RegisterTargets
    next to it do what standby does on AWS (idempotent there) and make the drain visible
    on an emulator whose standby leaves the target group alone."""

    def __init__(
        self,
        elbv2: Any,
        target_group_arn: str,
        port: int = 80,
        autoscaling: Any = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.elbv2 = elbv2
        self.arn = target_group_arn
        self.port = port
        self.autoscaling = autoscaling
        self.say = say or (lambda line: None)
        self.name = f"target group {target_group_arn.rsplit('/', 2)[-2]}"
        self.drained: dict[str, Drained] = {}

    def _targets(self, target: str) -> list[dict[str, Any]]:
        return [{"Id": target, "Port": self.port}]

    def health(self) -> dict[str, str]:
        found = self.elbv2.describe_target_health(TargetGroupArn=self.arn)
        return {
            str(t["Target"]["Id"]): str(t.get("TargetHealth", {}).get("State", "?"))
            for t in found["TargetHealthDescriptions"]
        }

    def healthy(self, target: str) -> bool:
        found = self.elbv2.describe_target_health(
            TargetGroupArn=self.arn, Targets=self._targets(target)
        )["TargetHealthDescriptions"]
        return bool(found) and found[0]["TargetHealth"]["State"] == "healthy"

    def _asg_instance(self, target: str) -> dict[str, Any] | None:
        """The target's Auto Scaling instance record, None outside any group."""
        if self.autoscaling is None:
            return None
        found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[target])
        instances = found.get("AutoScalingInstances", [])
        return dict(instances[0]) if instances else None

    def _group(self, name: str) -> dict[str, Any]:
        found = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return dict(found["AutoScalingGroups"][0])

    def drain(self, target: str) -> None:
        state = self.drained.setdefault(target, Drained())
        member = self._asg_instance(target)
        if member is not None and member["LifecycleState"] == "InService":
            group = self._group(member["AutoScalingGroupName"])
            if self.arn in group.get("TargetGroupARNs", []):
                self._enter_standby(target, group, state)
        self.elbv2.deregister_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        self.elbv2.get_waiter("target_deregistered").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": 120},
        )

    def _enter_standby(self, target: str, group: dict[str, Any], state: Drained) -> None:
        name = group["AutoScalingGroupName"]
        desired, minimum = int(group["DesiredCapacity"]), int(group["MinSize"])
        if desired - 1 < minimum:
            self.say(
                f"{target}: {name} has MinSize {minimum} = desired {desired}: MinSize "
                f"{desired - 1} while it is on standby (put back after)"
            )
            state.lowered_min = minimum  # first: an interrupted update is undone too
            self.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=desired - 1
            )
        state.standby = True
        self.autoscaling.enter_standby(
            AutoScalingGroupName=name, InstanceIds=[target], ShouldDecrementDesiredCapacity=True
        )
        self.say(f"{target}: on standby in {name} (desired {desired} -> {desired - 1})")

    def _exit_standby(self, target: str) -> str | None:
        """ExitStandby once the instance is on standby; its group's name (None: no
        longer in a group). One still EnteringStandby is waited for (AWS accepts
        ExitStandby only from Standby); one InService never entered it."""
        deadline = time.monotonic() + STANDBY_SETTLE
        while True:
            member = self._asg_instance(target)
            if member is None:
                return None
            state, name = member["LifecycleState"], str(member["AutoScalingGroupName"])
            if state == "Standby":
                self.autoscaling.exit_standby(AutoScalingGroupName=name, InstanceIds=[target])
                self.say(f"{target}: out of standby in {name}")
                return name
            if state != "EnteringStandby":
                return name  # InService: it never got there; Pending: on its way back
            if time.monotonic() > deadline:
                raise HostsError(
                    f"{target} is still EnteringStandby in {name} after "
                    f"{STANDBY_SETTLE:.0f}s: `aws autoscaling exit-standby "
                    f"--auto-scaling-group-name {name} --instance-ids {target}` once it is Standby"
                )
            time.sleep(2)

    def restore(self, target: str, timeout: float) -> None:
        """Undo what drain() did, step by step (each step marked done, so a second call
        after a failure does only what is left), then wait `timeout` for its health."""
        state = self.drained.get(target, Drained())
        group = None
        if state.standby:
            group = self._exit_standby(target)
            state.standby = False
        self.elbv2.register_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        if state.lowered_min is not None:
            group = group or self._group_of(target)
            if group:
                self.autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=group, MinSize=state.lowered_min
                )
                self.say(f"{target}: {group} MinSize {state.lowered_min} again")
            state.lowered_min = None
        self.drained.pop(target, None)
        if timeout <= 0:
            return
        self.elbv2.get_waiter("target_in_service").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": max(int(timeout // 5), 1)},
        )

    def _group_of(self, target: str) -> str | None:
        member = self._asg_instance(target)
        return str(member["AutoScalingGroupName"]) if member else None


def static_balancer(env: Environment, spec: Path) -> Balancer | None:
    """The ALB stand-in that a static inventory names (the fleet replica), if any."""
    if not env.hosts.inventory:
        return None
    group = static_inventory(spec.resolve().parent / env.hosts.inventory)[1]
    return StandinBalancer(str(group["alb_runtime"])) if group.get("alb_runtime") else None


def balancer_for(
    env: Environment,
    group: Mapping[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
) -> Balancer:
    """The balancer in front of the env's hosts: the stand-in a static inventory names
    (`alb_runtime` in its group data), else the env's ELBv2 target group (its ASG
    members drained through standby)."""
    if group and group.get("alb_runtime"):
        return StandinBalancer(str(group["alb_runtime"]))
    elbv2 = client_for(env, "elbv2", region=env.alb_region)
    name = derive(env).resource_name("tg")
    groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    autoscaling = client_for(env, "autoscaling")
    return ElbBalancer(elbv2, groups[0]["TargetGroupArn"], autoscaling=autoscaling, say=say)
