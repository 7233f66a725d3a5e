"""Scaling: IAM role + instance profile, launch template, Auto Scaling group, CPU policy.

- the role may read the environment's SSM path only, and decrypt through SSM with the
  default `alias/aws/ssm` key
- the launch template: AMI from asg.ami_id or the public SSM AMI parameter, IMDSv2
  required, user data that bootstraps the host with the project's own pyinfra deploy
- the ASG spans the spec's subnets, registers in the target group, uses ELB health
  checks; a target-tracking policy keeps ASGAverageCPUUtilization at the spec's target
- a changed launch template becomes a new default version and the ASG is moved to it;
  old instances are replaced: on AWS by an instance refresh, where that API is missing
  (moto) by our own rolling replacement, one instance at a time, each replacement
  InService before the next. Instances carry a hash of the template settings they were
  launched from in the `launch-template-config` tag (propagated by the ASG) to tell old
  from new; a replacement cut short is resumed by the next apply.
- moto stores a new launch template VERSION's user data in a form its own ASG cannot
  launch from (an assertion in moto), so against an emulator a changed template is
  replaced (deleted and created again under the same name) instead of versioned.

The release new instances boot is not in the spec: it is `--release V` / `--artifact-url
URL` (or JOBTORY_RELEASE_VERSION / JOBTORY_ARTIFACT_URL), else the one the current launch
template already carries. The user data itself is jobtory_stack.hosts.render_user_data,
the same bootstrap `deploy.py hosts --user-data` prints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import Action, Change, Ctx, field_diffs, fmt, tag_dict, tag_list
from jobtory_stack.errors import AwsError
from jobtory_stack.render.user_data import render_user_data

CONFIG_TAG = "launch-template-config"
RELEASE_ENV = "JOBTORY_RELEASE_VERSION"
ARTIFACT_ENV = "JOBTORY_ARTIFACT_URL"
PLACEHOLDER_RELEASE = "unreleased"
MOTO_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
ASSUME_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
GRACE_SECONDS = 300


@dataclass(frozen=True)
class Desired:
    role: str
    policy: dict[str, Any]
    template: str
    template_fields: dict[str, Any]
    template_data: dict[str, Any]
    config_hash: str
    asg: str
    asg_fields: dict[str, Any]
    desired_capacity: int
    policy_name: str
    target_cpu: float


@dataclass
class Observed:
    role: bool = False
    role_owned: bool = False
    policy: dict[str, Any] | None = None
    profile: bool = False
    profile_has_role: bool = False
    template_id: str | None = None
    template_version: int | None = None
    template_fields: dict[str, Any] = field(default_factory=dict)
    asg: dict[str, Any] | None = None
    instances: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (state, hash)
    target_cpu: float | None = None


# ---- desired -------------------------------------------------------------------------------


def role_policy(ctx: Ctx, account: str) -> dict[str, Any]:
    region = ctx.env.region
    path = ctx.env.ssm_prefix.rstrip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadEnvironmentParameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"],
                "Resource": [
                    f"arn:aws:ssm:{region}:{account}:parameter{path}",
                    f"arn:aws:ssm:{region}:{account}:parameter{path}/*",
                ],
            },
            {
                "Sid": "DecryptWithTheSsmDefaultKey",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/aws/ssm"},
                },
            },
        ],
    }


def account_id(ctx: Ctx) -> str:
    if "account" not in ctx.ids:
        ctx.ids["account"] = ctx.client("sts").get_caller_identity()["Account"]
    return ctx.ids["account"]


def resolve_ami(ctx: Ctx) -> str:
    """asg.ami_id, else the public SSM AMI parameter; on an emulator without it, moto's."""
    asg = ctx.env.asg
    if asg.ami_id:
        return asg.ami_id
    if "ami" in ctx.ids:
        return ctx.ids["ami"]
    candidates = [asg.ami_ssm_parameter] + ([MOTO_AMI_PARAMETER] if ctx.emulator else [])
    for name in candidates:
        try:
            ami = ctx.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
            continue
        if name != asg.ami_ssm_parameter:
            ctx.note(
                f"! the emulator has no {asg.ami_ssm_parameter}; using its own AMI {ami} "
                f"(from {name}) instead"
            )
        ctx.ids["ami"] = ami
        return ami
    if ctx.emulator:
        images = ctx.ec2.describe_images(Owners=["amazon"])["Images"]
        if images:
            ami = sorted(i["ImageId"] for i in images)[0]
            ctx.note(f"! the emulator has no {asg.ami_ssm_parameter}; using its AMI {ami}")
            ctx.ids["ami"] = ami
            return ami
    raise AwsError(
        f"the SSM AMI parameter {asg.ami_ssm_parameter} does not exist in {ctx.env.region}; "
        "fix asg.ami_ssm_parameter or set asg.ami_id"
    )


def baked(encoded: str | None, key: str) -> str | None:
    """A `KEY=value` line of an existing user data script (the release it boots)."""
    if not encoded:
        return None
    try:
        script = base64.b64decode(encoded).decode()
    except ValueError:
        return None
    found = re.search(rf"^{key}=(.*)$", script, re.MULTILINE)
    if not found:
        return None
    words = shlex.split(found.group(1))
    return words[0] if words else ""


def current_user_data(ctx: Ctx) -> str | None:
    try:
        versions = ctx.ec2.describe_launch_template_versions(
            LaunchTemplateName=ctx.d.resource_name("lt"), Versions=["$Default"]
        )["LaunchTemplateVersions"]
    except ClientError as exc:
        if error_code(exc).startswith("InvalidLaunchTemplate"):
            return None
        raise
    return versions[0]["LaunchTemplateData"].get("UserData") if versions else None


def user_data(ctx: Ctx) -> str:
    """The project's own bootstrap (`deploy.py hosts --user-data`): fetch the release's
    artifacts and run pyinfra/deploy.py against @local. The release is --release /
    JOBTORY_RELEASE_VERSION, else the one the current template already boots."""
    current = current_user_data(ctx)
    version = ctx.release or os.environ.get(RELEASE_ENV) or baked(current, "VERSION")
    url = ctx.artifact_url or os.environ.get(ARTIFACT_ENV) or baked(current, "ARTIFACT_URL")
    if not version:
        if not ctx.emulator:
            raise AwsError(
                "the launch template needs the release new instances boot: pass --release V "
                "and --artifact-url URL (artifacts built by `deploy.py hosts`)"
            )
        version = PLACEHOLDER_RELEASE
        ctx.note(f"! no --release given: the emulator's launch template boots '{version}'")
    return render_user_data(ctx.env.name, version, url or "")


def desired(ctx: Ctx) -> Desired:
    d, asg = ctx.d, ctx.env.asg
    ami = resolve_ami(ctx)
    profile = d.resource_name("ec2")
    encoded = base64.b64encode(user_data(ctx).encode()).decode()
    template_fields = {
        "image_id": ami,
        "instance_type": asg.instance_type,
        "instance_profile": profile,
        "security_groups": ["ec2"],
        "http_tokens": "required",
        "http_endpoint": "enabled",
        "user_data": encoded,
    }
    data = {
        "ImageId": ami,
        "InstanceType": asg.instance_type,
        "IamInstanceProfile": {"Name": profile},
        "SecurityGroupIds": [ctx.ids.get("sg:ec2", "ec2")],
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "UserData": encoded,
        "TagSpecifications": [
            {
                "ResourceType": "instance",
                "Tags": tag_list({**ctx.tags, "Name": d.resource_name("ec2")}),
            }
        ],
    }
    return Desired(
        role=profile,
        policy=role_policy(ctx, account_id(ctx)),
        template=d.resource_name("lt"),
        template_fields=template_fields,
        template_data=data,
        config_hash=hashlib.sha256(
            json.dumps(template_fields, sort_keys=True).encode()
        ).hexdigest()[:12],
        asg=d.resource_name("asg"),
        asg_fields={
            "min_size": asg.min_size,
            "max_size": asg.max_size,
            "subnets": sorted(asg.subnets),
            "target_groups": ["tg"],
            "health_check_type": "ELB",
        },
        desired_capacity=asg.desired_capacity,
        policy_name=d.resource_name("cpu"),
        target_cpu=float(asg.target_cpu_percent),
    )


# ---- observed ------------------------------------------------------------------------------


def decode_policy(document: Any) -> dict[str, Any]:
    if isinstance(document, str):
        return dict(json.loads(urllib.parse.unquote(document)))
    return dict(document)


def template_fields(data: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    sg_names = {v: k.split(":", 1)[1] for k, v in ctx.ids.items() if k.startswith("sg:")}
    meta = data.get("MetadataOptions", {})
    return {
        "image_id": data.get("ImageId"),
        "instance_type": data.get("InstanceType"),
        "instance_profile": data.get("IamInstanceProfile", {}).get("Name"),
        "security_groups": sorted(sg_names.get(g, g) for g in data.get("SecurityGroupIds", [])),
        "http_tokens": meta.get("HttpTokens"),
        "http_endpoint": meta.get("HttpEndpoint"),
        "user_data": data.get("UserData"),
    }


def observe(ctx: Ctx, want: Desired) -> Observed:
    o = Observed()
    iam = ctx.iam
    try:
        role = iam.get_role(RoleName=want.role)["Role"]
        o.role = True
        o.role_owned = all(tag_dict(role.get("Tags")).get(k) == v for k, v in ctx.tags.items())
        try:
            doc = iam.get_role_policy(RoleName=want.role, PolicyName="ssm-read")
            o.policy = decode_policy(doc["PolicyDocument"])
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    try:
        profile = iam.get_instance_profile(InstanceProfileName=want.role)["InstanceProfile"]
        o.profile = True
        o.profile_has_role = any(r["RoleName"] == want.role for r in profile.get("Roles", []))
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    try:
        lt = ctx.ec2.describe_launch_templates(LaunchTemplateNames=[want.template])[
            "LaunchTemplates"
        ][0]
        o.template_id = ctx.ids["lt"] = lt["LaunchTemplateId"]
        o.template_version = int(lt["DefaultVersionNumber"])
        version = ctx.ec2.describe_launch_template_versions(
            LaunchTemplateId=o.template_id, Versions=[str(o.template_version)]
        )["LaunchTemplateVersions"][0]
        o.template_fields = template_fields(dict(version["LaunchTemplateData"]), ctx)
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidLaunchTemplateName"):
            raise
    groups = ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[want.asg])[
        "AutoScalingGroups"
    ]
    if groups:
        g = groups[0]
        subnet_names = {
            v: k.split(":", 1)[1] for k, v in ctx.ids.items() if k.startswith("subnet:")
        }
        tg_arn = ctx.ids.get("tg")
        o.asg = {
            "min_size": g["MinSize"],
            "max_size": g["MaxSize"],
            "desired": g["DesiredCapacity"],
            "subnets": sorted(
                subnet_names.get(s, s) for s in g.get("VPCZoneIdentifier", "").split(",") if s
            ),
            "target_groups": sorted(
                "tg" if a == tg_arn else a for a in g.get("TargetGroupARNs", [])
            ),
            "health_check_type": g.get("HealthCheckType"),
            "launch_template_id": g.get("LaunchTemplate", {}).get("LaunchTemplateId"),
            "launch_template_version": g.get("LaunchTemplate", {}).get("Version"),
            "tags": {t["Key"]: t.get("Value", "") for t in g.get("Tags", [])},
        }
        o.instances = instance_configs(ctx, want.asg, g)
        policies = ctx.autoscaling.describe_policies(
            AutoScalingGroupName=want.asg, PolicyNames=[want.policy_name]
        )["ScalingPolicies"]
        for p in policies:
            config = p.get("TargetTrackingConfiguration", {})
            metric = config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
            if metric == "ASGAverageCPUUtilization":
                o.target_cpu = float(config.get("TargetValue", 0))
    return o


# ---- diff ----------------------------------------------------------------------------------


def diff(want: Desired, have: Observed) -> list[Change]:
    changes: list[Change] = []
    if not have.role:
        changes.append(
            Change("create", "iam_role", want.role, ("policy: read the env's SSM path",))
        )
    elif have.policy != want.policy or not have.role_owned:
        shown: tuple[str, ...] = ("policy: differs",) if have.policy != want.policy else ()
        shown += ("tags: (none) -> stack, env",) if not have.role_owned else ()
        changes.append(Change("update", "iam_role", want.role, shown))
    if not have.profile or not have.profile_has_role:
        action: Action = "create" if not have.profile else "update"
        changes.append(Change(action, "iam_instance_profile", want.role, (f"role: {want.role}",)))
    if have.template_id is None:
        shown = tuple(f"{k}: {fmt(v)}" for k, v in want.template_fields.items() if k != "user_data")
        changes.append(
            Change(
                "create", "launch_template", want.template, (*shown, "user_data: pyinfra bootstrap")
            )
        )
    else:
        diffs = tuple(
            "user_data: changed" if d.startswith("user_data") else d
            for d in field_diffs(want.template_fields, have.template_fields)
        )
        if diffs:
            changes.append(
                Change(
                    "update",
                    "launch_template",
                    want.template,
                    (*diffs, "-> new version, rolling replacement"),
                )
            )
    template_changes = bool(
        have.template_id is None or field_diffs(want.template_fields, have.template_fields)
    )
    if have.asg is None:
        shown = tuple(f"{k}: {fmt(v)}" for k, v in want.asg_fields.items())
        changes.append(
            Change(
                "create",
                "autoscaling_group",
                want.asg,
                (*shown, f"desired_capacity: {want.desired_capacity}"),
            )
        )
    else:
        diffs = field_diffs(want.asg_fields, have.asg)
        version = str(have.template_version) if have.template_version is not None else None
        current = have.asg["launch_template_version"]
        if template_changes:
            diffs += (f"launch_template_version: {current} -> (new)",)
        elif current != version or have.asg["launch_template_id"] != have.template_id:
            diffs += (f"launch_template: {current} -> {version}",)
        if any(have.asg["tags"].get(k) != v for k, v in asg_tags(want).items()):
            diffs += ("tags: -> stack, env, Name, launch-template-config",)
        old = [i for i, (_, h) in have.instances.items() if h != want.config_hash]
        if old:
            diffs += (f"instances on an older launch template: {len(old)} -> 0 (replace)",)
        if diffs:
            changes.append(Change("update", "autoscaling_group", want.asg, diffs))
    if have.target_cpu is None:
        changes.append(
            Change(
                "create",
                "scaling_policy",
                want.policy_name,
                (f"ASGAverageCPUUtilization: {want.target_cpu:g}",),
            )
        )
    elif have.target_cpu != want.target_cpu:
        changes.append(
            Change(
                "update",
                "scaling_policy",
                want.policy_name,
                (f"target: {have.target_cpu:g} -> {want.target_cpu:g}",),
            )
        )
    return changes


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want))


# ---- apply ---------------------------------------------------------------------------------


def apply(ctx: Ctx, changes: list[Change]) -> None:
    if not changes:
        return
    want = desired(ctx)
    have = observe(ctx, want)
    iam, ec2, autoscaling = ctx.iam, ctx.ec2, ctx.autoscaling
    if not have.role:
        iam.create_role(
            RoleName=want.role,
            AssumeRolePolicyDocument=json.dumps(ASSUME_EC2),
            Description=f"{ctx.d.resource_name('ec2')} hosts: read SSM {ctx.env.ssm_prefix}",
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        ctx.out(f"  + iam_role {want.role}")
    elif not have.role_owned:
        iam.tag_role(RoleName=want.role, Tags=tag_list(ctx.tags))  # type: ignore[arg-type]
    if have.policy != want.policy:
        iam.put_role_policy(
            RoleName=want.role, PolicyName="ssm-read", PolicyDocument=json.dumps(want.policy)
        )
        ctx.out(f"  ~ iam_role {want.role}: policy ssm-read")
    if not have.profile:
        iam.create_instance_profile(
            InstanceProfileName=want.role,
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        ctx.out(f"  + iam_instance_profile {want.role}")
    if not have.profile_has_role:
        iam.add_role_to_instance_profile(InstanceProfileName=want.role, RoleName=want.role)
    data = dict(want.template_data)
    data["SecurityGroupIds"] = [ctx.ids["sg:ec2"]]
    changed_template = have.template_id is not None and bool(
        field_diffs(want.template_fields, have.template_fields)
    )
    if changed_template and ctx.emulator:
        ctx.note(
            "! moto cannot launch from a new launch template version (its ASG asserts on "
            "the stored user data): replacing the template instead of versioning it"
        )
        ec2.delete_launch_template(LaunchTemplateId=have.template_id or "")
        have.template_id = None
    if have.template_id is None:
        lt = ec2.create_launch_template(
            LaunchTemplateName=want.template,
            LaunchTemplateData=data,  # type: ignore[arg-type]
            VersionDescription="created by deploy.py apply",
            TagSpecifications=[
                {"ResourceType": "launch-template", "Tags": tag_list(ctx.tags)}  # type: ignore[misc,list-item]
            ],
        )["LaunchTemplate"]
        have.template_id = ctx.ids["lt"] = lt["LaunchTemplateId"]
        have.template_version = int(lt.get("LatestVersionNumber", 1))
        ctx.out(f"  + launch_template {want.template} v{have.template_version}")
    elif changed_template:
        created = ec2.create_launch_template_version(
            LaunchTemplateId=have.template_id,
            LaunchTemplateData=data,  # type: ignore[arg-type]
            VersionDescription="updated by deploy.py apply",
        )["LaunchTemplateVersion"]
        have.template_version = int(created["VersionNumber"])
        ec2.modify_launch_template(
            LaunchTemplateId=have.template_id, DefaultVersion=str(have.template_version)
        )
        ctx.out(f"  ~ launch_template {want.template} -> v{have.template_version} (default)")
    version = str(have.template_version)
    tags = [
        {
            "ResourceId": want.asg,
            "ResourceType": "auto-scaling-group",
            "Key": k,
            "Value": v,
            "PropagateAtLaunch": True,
        }
        for k, v in asg_tags(want).items()
    ]
    subnets = ",".join(ctx.ids[f"subnet:{n}"] for n in want.asg_fields["subnets"])
    if have.asg is None:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=want.asg,
            LaunchTemplate={"LaunchTemplateId": have.template_id, "Version": version},
            MinSize=want.asg_fields["min_size"],
            MaxSize=want.asg_fields["max_size"],
            DesiredCapacity=want.desired_capacity,
            VPCZoneIdentifier=subnets,
            TargetGroupARNs=[ctx.ids["tg"]],
            HealthCheckType="ELB",
            HealthCheckGracePeriod=GRACE_SECONDS,
            Tags=tags,  # type: ignore[arg-type]
        )
        ctx.out(
            f"  + autoscaling_group {want.asg} (min {want.asg_fields['min_size']}, desired "
            f"{want.desired_capacity}, max {want.asg_fields['max_size']})"
        )
    else:
        update: dict[str, Any] = {}
        a = have.asg
        if a["min_size"] != want.asg_fields["min_size"]:
            update["MinSize"] = want.asg_fields["min_size"]
        if a["max_size"] != want.asg_fields["max_size"]:
            update["MaxSize"] = want.asg_fields["max_size"]
        if a["subnets"] != want.asg_fields["subnets"]:
            update["VPCZoneIdentifier"] = subnets
        if a["health_check_type"] != "ELB":
            update["HealthCheckType"] = "ELB"
            update["HealthCheckGracePeriod"] = GRACE_SECONDS
        if a["launch_template_version"] != version or a["launch_template_id"] != have.template_id:
            update["LaunchTemplate"] = {"LaunchTemplateId": have.template_id, "Version": version}
        if update:
            autoscaling.update_auto_scaling_group(AutoScalingGroupName=want.asg, **update)
            ctx.out(f"  ~ autoscaling_group {want.asg}: {', '.join(sorted(update))}")
        if a["target_groups"] != ["tg"]:
            autoscaling.attach_load_balancer_target_groups(
                AutoScalingGroupName=want.asg, TargetGroupARNs=[ctx.ids["tg"]]
            )
        wanted_tags = {t["Key"]: t["Value"] for t in tags}
        if any(a["tags"].get(k) != v for k, v in wanted_tags.items()):
            autoscaling.create_or_update_tags(Tags=tags)  # type: ignore[arg-type]
    if have.target_cpu != want.target_cpu:
        autoscaling.put_scaling_policy(
            AutoScalingGroupName=want.asg,
            PolicyName=want.policy_name,
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration={
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ASGAverageCPUUtilization"
                },
                "TargetValue": want.target_cpu,
            },
        )
        ctx.out(f"  ~ scaling_policy {want.policy_name}: CPU target {want.target_cpu:g}%")
    if have.asg is not None:
        roll(ctx, want.asg, want.config_hash)


# ---- rolling replacement -------------------------------------------------------------------


def asg_tags(want: Desired) -> dict[str, str]:
    """The ASG's tags, propagated to its instances (ownership + the template's config hash)."""
    instance_tags = tag_dict(want.template_data["TagSpecifications"][0]["Tags"])
    return {**instance_tags, CONFIG_TAG: want.config_hash}


def instance_configs(ctx: Ctx, asg: str, group: Any | None = None) -> dict[str, tuple[str, str]]:
    """{instance id: (lifecycle state, launch-template-config tag)} of the ASG's instances."""
    if group is None:
        group = ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])[
            "AutoScalingGroups"
        ][0]
    ids = [i["InstanceId"] for i in group.get("Instances", [])]
    states = {i["InstanceId"]: i["LifecycleState"] for i in group.get("Instances", [])}
    versions: dict[str, str] = {}
    if ids:
        for r in ctx.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in r["Instances"]:
                versions[inst["InstanceId"]] = tag_dict(inst.get("Tags")).get(CONFIG_TAG, "?")
    return {i: (states[i], versions.get(i, "?")) for i in ids}


def roll(ctx: Ctx, asg: str, config: str) -> None:
    """Replace the instances launched from an older template (tag != config)."""
    old = [i for i, (_, v) in instance_configs(ctx, asg).items() if v != config]
    if not old:
        return
    no_retry = ctx.client(
        "autoscaling", config=Config(retries={"mode": "standard", "max_attempts": 1})
    )
    try:
        refresh = no_retry.start_instance_refresh(
            AutoScalingGroupName=asg,
            Strategy="Rolling",
            Preferences={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
        )
        ctx.out(
            f"  ~ autoscaling_group {asg}: instance refresh {refresh['InstanceRefreshId']} "
            f"started for {len(old)} instance(s) (follow it with `deploy.py status`)"
        )
        return
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        reason = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        if reason == "InstanceRefreshInProgress":
            ctx.note(f"! {asg}: an instance refresh is already running; see `deploy.py status`")
            return
        if isinstance(exc, ClientError) and not ctx.emulator:
            raise
    ctx.note(
        f"! instance refresh is not available here ({reason}; moto lacks it): "
        f"replacing {len(old)} instance(s) one at a time instead"
    )
    for instance_id in old:
        ctx.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
        )
        ctx.out(f"  ~ autoscaling_group {asg}: replacing {instance_id}")

        def replaced(gone: str = instance_id) -> str | None:
            members = instance_configs(ctx, asg)
            fresh = [i for i, (s, v) in members.items() if s == "InService" and v == config]
            if gone not in members and fresh:
                return None
            return f"{len(fresh)} new instance(s) InService"

        ctx.wait_for(f"the replacement of {instance_id}", replaced)


# ---- destroy / status ----------------------------------------------------------------------


def destroy(ctx: Ctx) -> int:
    d = ctx.d
    count = 0
    asg_name, lt_name, role = d.resource_name("asg"), d.resource_name("lt"), d.resource_name("ec2")
    groups = ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])[
        "AutoScalingGroups"
    ]
    for g in groups:
        tags = {t["Key"]: t.get("Value", "") for t in g.get("Tags", [])}
        if any(tags.get(k) != v for k, v in ctx.tags.items()):
            continue
        ctx.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=asg_name, ForceDelete=True)
        ctx.out(f"  - autoscaling_group {asg_name} (and its instances)")
        count += 1

        def gone() -> str | None:
            left = ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])
            return "deleting" if left["AutoScalingGroups"] else None

        ctx.wait_for(f"autoscaling_group {asg_name} to be deleted", gone)
    try:
        lt = ctx.ec2.describe_launch_templates(LaunchTemplateNames=[lt_name])["LaunchTemplates"][0]
        if all(tag_dict(lt.get("Tags")).get(k) == v for k, v in ctx.tags.items()):
            ctx.ec2.delete_launch_template(LaunchTemplateId=lt["LaunchTemplateId"])
            ctx.out(f"  - launch_template {lt_name}")
            count += 1
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidLaunchTemplateName"):
            raise
    try:
        found = ctx.iam.get_role(RoleName=role)["Role"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return count
    if any(tag_dict(found.get("Tags")).get(k) != v for k, v in ctx.tags.items()):
        return count
    try:
        ctx.iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=role)
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    try:
        ctx.iam.delete_instance_profile(InstanceProfileName=role)
        ctx.out(f"  - iam_instance_profile {role}")
        count += 1
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    for policy in ctx.iam.list_role_policies(RoleName=role)["PolicyNames"]:
        ctx.iam.delete_role_policy(RoleName=role, PolicyName=policy)
    ctx.iam.delete_role(RoleName=role)
    ctx.out(f"  - iam_role {role}")
    return count + 1


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    if o.asg is None:
        return ["scaling: no autoscaling group"]
    states = ", ".join(
        f"{i} {s}{'' if v == want.config_hash else ' (old template)'}"
        for i, (s, v) in sorted(o.instances.items())
    )
    return [
        f"scaling: {want.asg} min {o.asg['min_size']} desired {o.asg['desired']} max "
        f"{o.asg['max_size']}, template v{o.template_version}, CPU target "
        f"{o.target_cpu if o.target_cpu is not None else '-'}",
        f"  instances: {states or 'none'}",
        *refresh_status(ctx, want.asg),
    ]


def refresh_status(ctx: Ctx, asg: str) -> list[str]:
    """The latest instance refresh (AWS); nothing where the API is missing (moto)."""
    if ctx.emulator:
        return []
    refreshes = ctx.autoscaling.describe_instance_refreshes(AutoScalingGroupName=asg, MaxRecords=1)
    lines = []
    for r in refreshes.get("InstanceRefreshes", []):
        line = f"  instance refresh {r['InstanceRefreshId']}: {r.get('Status')} "
        line += f"{r.get('PercentageComplete', 0)}%"
        if r.get("StatusReason"):
            line += f" ({r['StatusReason']})"
        lines.append(line)
    return lines
