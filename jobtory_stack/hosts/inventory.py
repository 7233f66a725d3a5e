"""Which hosts a deploy reaches: a static pyinfra inventory file (the fleet replica), or
the environment's EC2 instances found by ownership tags and ASG membership."""

from __future__ import annotations

import os
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobtory_stack.aws.client import client_for
from jobtory_stack.errors import HostsError
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.model import Environment


@dataclass(frozen=True)
class Target:
    """One host: its pyinfra inventory name and its id in the load balancer."""

    name: str
    lb_target: str
    address: str = ""


def static_inventory(path: Path) -> tuple[list[Target], dict[str, Any]]:
    """A static pyinfra inventory file (the fleet replica's): its hosts as targets, and
    the group data. The file holds one group: NAME = ([(host, data), ...], group data);
    each host's data names its id in the load balancer as `lb_target`."""
    module = runpy.run_path(str(path))
    groups = [
        v
        for k, v in module.items()
        if not k.startswith("_") and isinstance(v, tuple) and len(v) == 2
    ]
    if len(groups) != 1:
        raise HostsError(f"{path}: expected one inventory group (NAME = (hosts, data))")
    hosts, group = groups[0]
    targets = [
        Target(name, str(data.get("lb_target", name)), str(data.get("ssh_hostname", "")))
        for name, data in hosts
    ]
    return targets, dict(group)


def ec2_inventory(
    env: Environment, skipped: list[tuple[str, str]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra hosts of an environment on EC2: running instances tagged with the stack's
    ownership tags, members of the env's ASG first. An ASG member not InService (still
    booting: Pending, Pending:Wait; leaving: Terminating, Detaching; Standby) is left
    out, and `(instance id, lifecycle state)` appended to `skipped`: a booting instance
    deploys itself from its user data, one leaving is no concern of the deploy."""
    d = derive(env)
    ec2 = client_for(env, "ec2")
    asg = client_for(env, "autoscaling")
    states: dict[str, str] = {}
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[d.resource_name("asg")])
    for group in groups.get("AutoScalingGroups", []):
        states.update({i["InstanceId"]: i["LifecycleState"] for i in group.get("Instances", [])})
    members = [i for i, state in states.items() if state == "InService"]
    filters: list[Any] = [{"Name": f"tag:{k}", "Values": [v]} for k, v in d.tags.items()]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    found: dict[str, Any] = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                found[inst["InstanceId"]] = inst
    if skipped is not None:  # EC2 may not call a booting one "running" yet: name it anyway
        skipped.extend(sorted((i, s) for i, s in states.items() if s != "InService"))
    loose = sorted(i for i in found if i not in states)  # tagged, in no ASG
    ids = [i for i in members if i in found] + loose
    via_public = os.environ.get("JOBTORY_SSH_VIA", "private") == "public"
    hosts: list[tuple[str, dict[str, Any]]] = []
    for instance_id in ids:
        inst = found[instance_id]
        address = inst.get("PublicIpAddress") if via_public else inst.get("PrivateIpAddress")
        data: dict[str, Any] = {
            "ssh_hostname": address or inst.get("PrivateIpAddress", ""),
            "ssh_user": os.environ.get("JOBTORY_SSH_USER", "admin"),
            "_sudo": True,
            "instance_id": instance_id,
            "lb_target": instance_id,
            "asg_member": instance_id in members,
        }
        if os.environ.get("JOBTORY_SSH_KEY"):
            data["ssh_key"] = os.environ["JOBTORY_SSH_KEY"]
        hosts.append((instance_id, data))
    return hosts
