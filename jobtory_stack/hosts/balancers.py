"""The load balancer a rolling deploy drains hosts from: the ELBv2 target group, none
(Caddy's direct mode), or the fleet replica's ALB stand-in through its runtime API."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from jobtory_stack.aws.client import client_for
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


class ElbBalancer:
    """A real (or emulated) ALB target group: deregister / register + boto3 waiters."""

    def __init__(self, elbv2: Any, target_group_arn: str, port: int = 80) -> None:
        self.elbv2 = elbv2
        self.arn = target_group_arn
        self.port = port
        self.name = f"target group {target_group_arn.rsplit('/', 2)[-2]}"

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

    def drain(self, target: str) -> None:
        self.elbv2.deregister_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        self.elbv2.get_waiter("target_deregistered").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": 120},
        )

    def restore(self, target: str, timeout: float) -> None:
        self.elbv2.register_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        if timeout <= 0:
            return
        self.elbv2.get_waiter("target_in_service").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": max(int(timeout // 5), 1)},
        )


def static_balancer(env: Environment, spec: Path) -> Balancer | None:
    """The ALB stand-in that a static inventory names (the fleet replica), if any."""
    if not env.hosts.inventory:
        return None
    group = static_inventory(spec.resolve().parent / env.hosts.inventory)[1]
    return StandinBalancer(str(group["alb_runtime"])) if group.get("alb_runtime") else None


def balancer_for(env: Environment, group: Mapping[str, Any] | None = None) -> Balancer:
    """The balancer in front of the env's hosts: the stand-in a static inventory names
    (`alb_runtime` in its group data), else the env's ELBv2 target group."""
    if group and group.get("alb_runtime"):
        return StandinBalancer(str(group["alb_runtime"]))
    elbv2 = client_for(env, "elbv2", region=env.alb_region)
    name = derive(env).resource_name("tg")
    groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    return ElbBalancer(elbv2, groups[0]["TargetGroupArn"])
