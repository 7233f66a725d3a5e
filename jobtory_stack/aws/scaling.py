"""Scaling: IAM role + instance profile, launch template, Auto Scaling group, CPU policy.

- the role may read the environment's SSM path only, and decrypt through SSM with the
  default `alias/aws/ssm` key
- the launch template: AMI from asg.ami_id or the public SSM AMI parameter, IMDSv2
  required, user data that bootstraps the host with the project's own pyinfra deploy
- the ASG spans the spec's subnets, registers in the target group, uses ELB health
  checks; a target-tracking policy keeps ASGAverageCPUUtilization at the spec's target
- a changed launch template becomes a new default version. hosts.strategy says how it
  reaches the running instances: `inplace` moves the group to it (new instances boot it;
  the pyinfra rolling deploy updates the running ones), `refresh` starts an instance
  refresh to it (aws.refresh) and follows it; AWS moves the group once it succeeds.
  Instances carry a hash of the template settings they were launched from in the
  `launch-template-config` tag (propagated by the ASG) to tell old from new; a refresh
  cut short is started (or followed) again by the next apply.
- a new instance profile takes AWS seconds to minutes to propagate: the calls that name
  it are retried meanwhile (core.propagated).

The same API calls go to AWS and to the replica's emulator (moto with the repository's
patches, replica/moto_patches): there is no emulator branch here.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from jobtory_stack.aws import refresh
from jobtory_stack.aws.client import RETRY_CONFIG, error_code
from jobtory_stack.aws.core import (
    ADOPTION_SHOWN,
    Ctx,
    adopted,
    adoption_tags,
    owned,
    propagated,
    tag_dict,
    tag_list,
)
from jobtory_stack.aws.family import ADOPTED_KEPT, Handlers, Teardown, dispatch, keep, resources
from jobtory_stack.aws.plan import Change, Ref, field_diffs, fmt
from jobtory_stack.errors import AwsError
from jobtory_stack.render.user_data import render_user_data
from jobtory_stack.spec.constants import RELEASE_MANIFEST_KEY, RELEASES_PREFIX, VERSION_RE

CONFIG_TAG = "launch-template-config"
RELEASE_ENV = "JOBTORY_RELEASE_VERSION"
ARTIFACT_ENV = "JOBTORY_ARTIFACT_URL"
PLACEHOLDER_RELEASE = "unreleased"
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
# as aws.store's client: path-style addressing when an endpoint is given (an emulator)
PATH_STYLE = RETRY_CONFIG.merge(Config(s3={"addressing_style": "path"}))


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
    strategy: str
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
            {  # the release store (aws.store): objects under releases/ only, no listing
                "Sid": "ReadReleases",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{ctx.d.release_bucket(account)}/{RELEASES_PREFIX}*",
            },
        ],
    }


def account_id(ctx: Ctx) -> str:
    if "account" not in ctx.ids:
        ctx.ids["account"] = ctx.client("sts").get_caller_identity()["Account"]
    return ctx.ids["account"]


def resolve_ami(ctx: Ctx) -> str:
    """asg.ami_id, else the public SSM AMI parameter (the replica's emulator has the
    Debian ones too: replica/moto_patches/debian_ami_parameters.py)."""
    asg = ctx.env.asg
    if asg.ami_id:
        return asg.ami_id
    if "ami" in ctx.ids:
        return ctx.ids["ami"]
    try:
        ami = ctx.ssm.get_parameter(Name=asg.ami_ssm_parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        raise AwsError(
            f"the SSM AMI parameter {asg.ami_ssm_parameter} does not exist in "
            f"{ctx.env.region}; fix asg.ami_ssm_parameter or set asg.ami_id"
        ) from None
    ctx.ids["ami"] = ami
    return str(ami)


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


def manifest_sha256(ctx: Ctx, release: str) -> str:
    """The sha256 of a published release's manifest, read from the release store: the
    value the user data checks the manifest it downloads against."""
    bucket = ctx.d.release_bucket(account_id(ctx))
    key = RELEASE_MANIFEST_KEY.format(name=release)
    s3 = ctx.client("s3", config=PATH_STYLE if ctx.endpoint_url else None)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchKey", "NoSuchBucket", "404", "403", "AccessDenied"):
            raise
        raise AwsError(
            f"release {release} is not in the release store s3://{bucket} "
            f"({error_code(exc)}): publish it first with `deploy.py release publish --env "
            f"{ctx.env.name}` (or `deploy.py hosts`, which publishes what it deploys)"
        ) from None
    return hashlib.sha256(body.read()).hexdigest()


def release_user_data(
    ctx: Ctx, release: str, sha256: str, aws_env: Mapping[str, str] | None = None
) -> str:
    return render_user_data(
        ctx.env.name,
        release,
        bucket=ctx.d.release_bucket(account_id(ctx)),
        region=ctx.env.region,
        manifest_sha256=sha256,
        aws_env=aws_env,
    )


def user_data(ctx: Ctx) -> str:
    """The project's own bootstrap (`deploy.py hosts --user-data`): fetch the release from
    the store, verify it, run pyinfra/deploy.py against @local. The release is --release /
    JOBTORY_RELEASE_VERSION (it must be published: its manifest's sha256 goes into the user
    data), else the one the current template already boots (with its sha256 and settings)."""
    if ctx.artifact_url or os.environ.get(ARTIFACT_ENV):
        raise AwsError(
            "--artifact-url / JOBTORY_ARTIFACT_URL are gone: instances fetch their release "
            "from the release store (`deploy.py release publish`), verified; pass --release"
        )
    current = current_user_data(ctx)
    aws_env = parse_settings(baked(current, "AWS_ENV") or "")
    asked = ctx.release or os.environ.get(RELEASE_ENV)
    if asked:
        check_release(asked)  # before any call: a bad name is the user's error
        return release_user_data(ctx, asked, manifest_sha256(ctx, asked), aws_env)
    version, sha256 = baked(current, "VERSION"), baked(current, "MANIFEST_SHA256")
    if version:
        return release_user_data(ctx, version, sha256 or "", aws_env)
    if not ctx.emulator:
        raise AwsError(
            "the launch template needs the release new instances boot: publish one "
            "(`deploy.py release publish`) and pass --release NAME"
        )
    ctx.report.note(
        f"! no --release given: the emulator's launch template boots '{PLACEHOLDER_RELEASE}'"
    )
    return release_user_data(ctx, PLACEHOLDER_RELEASE, "", aws_env)


def parse_settings(text: str) -> dict[str, str]:
    """`K=V,K=V` (the user data's AWS_ENV) as a dict."""
    pairs = (part.partition("=") for part in text.split(",") if part.strip())
    return {k.strip(): v.strip() for k, _, v in pairs}


def check_release(name: str) -> str:
    if not VERSION_RE.match(name):
        raise AwsError(f"version {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


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
        "SecurityGroupIds": [ctx.ref("sg:ec2")],
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
        strategy=ctx.env.hosts.strategy,
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


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    return [
        *role_changes(want, have, ctx),
        *template_changes(want, have, ctx),
        *group_changes(want, have, ctx),
        *policy_changes(want, have),
    ]


def role_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    changes: list[Change] = []
    params: dict[str, Any] = {}
    if not have.role:
        params["CreateRole"] = {
            "RoleName": want.role,
            "AssumeRolePolicyDocument": json.dumps(ASSUME_EC2),
            "Description": f"{ctx.d.resource_name('ec2')} hosts: read SSM {ctx.env.ssm_prefix}",
            "Tags": tag_list(ctx.tags),
        }
    elif not have.role_owned:  # an existing role with our name: taken over, said so
        params["TagRole"] = {"RoleName": want.role, "Tags": adoption_tags(ctx.tags)}
    if have.policy != want.policy:
        params["PutRolePolicy"] = {
            "RoleName": want.role,
            "PolicyName": "ssm-read",
            "PolicyDocument": json.dumps(want.policy),
        }
    if not have.role:
        shown: tuple[str, ...] = ("policy: read the env's SSM path",)
        changes.append(Change("create", "iam_role", want.role, shown, params))
    elif params:
        shown = ("policy: differs",) if have.policy != want.policy else ()
        shown += (ADOPTION_SHOWN,) if not have.role_owned else ()
        changes.append(Change("update", "iam_role", want.role, shown, params))
    add_role = {"InstanceProfileName": want.role, "RoleName": want.role}
    shown = (f"role: {want.role}",)
    if not have.profile:
        create = {"InstanceProfileName": want.role, "Tags": tag_list(ctx.tags)}
        params = {"CreateInstanceProfile": create, "AddRoleToInstanceProfile": add_role}
        changes.append(Change("create", "iam_instance_profile", want.role, shown, params))
    elif not have.profile_has_role:
        params = {"AddRoleToInstanceProfile": add_role}
        changes.append(Change("update", "iam_instance_profile", want.role, shown, params))
    return changes


def template_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    """A changed template gets a new default version."""
    create: dict[str, Any] = {
        "CreateLaunchTemplate": {
            "LaunchTemplateName": want.template,
            "LaunchTemplateData": want.template_data,
            "VersionDescription": "created by deploy.py apply",
            "TagSpecifications": [{"ResourceType": "launch-template", "Tags": tag_list(ctx.tags)}],
        }
    }
    produces = ("lt", "lt_version")
    if have.template_id is None:
        shown = tuple(f"{k}: {fmt(v)}" for k, v in want.template_fields.items() if k != "user_data")
        diffs = (*shown, "user_data: pyinfra bootstrap")
        return [Change("create", "launch_template", want.template, diffs, create, produces)]
    diffs = tuple(
        "user_data: changed" if d.startswith("user_data") else d
        for d in field_diffs(want.template_fields, have.template_fields)
    )
    if not diffs:
        return []
    version = {
        "LaunchTemplateId": have.template_id,
        "LaunchTemplateData": want.template_data,
        "VersionDescription": "updated by deploy.py apply",
    }
    default = {"LaunchTemplateId": have.template_id, "DefaultVersion": Ref("lt_version")}
    update = {"CreateLaunchTemplateVersion": version, "ModifyLaunchTemplate": default}
    how = "instance refresh" if want.strategy == "refresh" else "in place by `deploy.py hosts`"
    diffs = (*diffs, f"-> new default version; running instances: {how}")
    return [Change("update", "launch_template", want.template, diffs, update, ("lt_version",))]


def template_moves(want: Desired, have: Observed) -> bool:
    """The plan creates the template or a new version of it."""
    return have.template_id is None or bool(field_diffs(want.template_fields, have.template_fields))


def group_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    moves = template_moves(want, have)
    template: dict[str, Any] = {
        "LaunchTemplateId": Ref("lt") if have.template_id is None else have.template_id,
        "Version": Ref("lt_version") if moves else str(have.template_version),
    }
    subnets = [ctx.ref(f"subnet:{n}") for n in want.asg_fields["subnets"]]
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
    if have.asg is None:
        shown = tuple(f"{k}: {fmt(v)}" for k, v in want.asg_fields.items())
        shown += (f"desired_capacity: {want.desired_capacity}",)
        create = {
            "AutoScalingGroupName": want.asg,
            "LaunchTemplate": template,
            "MinSize": want.asg_fields["min_size"],
            "MaxSize": want.asg_fields["max_size"],
            "DesiredCapacity": want.desired_capacity,
            # one comma-separated string for the API: the handler joins the (resolved) ids
            "VPCZoneIdentifier": subnets,
            "TargetGroupARNs": [ctx.ref("tg")],
            "HealthCheckType": "ELB",
            "HealthCheckGracePeriod": GRACE_SECONDS,
            "Tags": tags,
        }
        params = {"CreateAutoScalingGroup": create}
        return [Change("create", "autoscaling_group", want.asg, shown, params)]
    return group_update(want, have, ctx, template, subnets, tags)


def group_update(
    want: Desired,
    have: Observed,
    ctx: Ctx,
    template: dict[str, Any],
    subnets: list[str | Ref],
    tags: list[dict[str, Any]],
) -> list[Change]:
    a = have.asg
    assert a is not None
    diffs = field_diffs(want.asg_fields, a)
    update: dict[str, Any] = {}
    for key, api in (("min_size", "MinSize"), ("max_size", "MaxSize")):
        if a[key] != want.asg_fields[key]:
            update[api] = want.asg_fields[key]
    if a["subnets"] != want.asg_fields["subnets"]:
        update["VPCZoneIdentifier"] = subnets
    if a["health_check_type"] != "ELB":
        update.update(HealthCheckType="ELB", HealthCheckGracePeriod=GRACE_SECONDS)
    current = a["launch_template_version"]
    moves = template_moves(want, have)
    moved = moves or current != template["Version"] or a["launch_template_id"] != have.template_id
    old = sorted(i for i, (_, h) in have.instances.items() if h != want.config_hash)
    # refresh: AWS moves the group to the refresh's desired configuration once it succeeds
    by_refresh = want.strategy == "refresh" and bool(have.instances) and (moved or bool(old))
    if moved:
        diffs += (
            f"launch_template_version: {current} -> {'(new)' if moves else template['Version']}",
        )
        if not by_refresh:
            update["LaunchTemplate"] = template
    params: dict[str, Any] = {}
    if update:
        params["UpdateAutoScalingGroup"] = {"AutoScalingGroupName": want.asg, **update}
    if a["target_groups"] != ["tg"]:
        attach = {"AutoScalingGroupName": want.asg, "TargetGroupARNs": [ctx.ref("tg")]}
        params["AttachLoadBalancerTargetGroups"] = attach
    if any(a["tags"].get(k) != v for k, v in asg_tags(want).items()):
        diffs += ("tags: -> stack, env, Name, launch-template-config",)
        params["CreateOrUpdateTags"] = {"Tags": tags}
    if by_refresh:
        diffs += (f"instance refresh: {len(old)} of {len(have.instances)} instance(s) to replace",)
        params["StartInstanceRefresh"] = refresh.request(
            want.asg, template["LaunchTemplateId"], template["Version"]
        )
    if not diffs:
        return []
    notes = inplace_note(ctx, len(old)) if moved and old and not by_refresh else ()
    return [Change("update", "autoscaling_group", want.asg, diffs, params, notes=notes)]


def inplace_note(ctx: Ctx, old: int) -> tuple[str, ...]:
    return (
        f"! {old} running instance(s) keep their launch template until replaced: "
        f"`deploy.py hosts --env {ctx.env.name}` updates them in place (hosts.strategy "
        "inplace); a new AMI or instance type reaches them only with new instances",
    )


def policy_changes(want: Desired, have: Observed) -> list[Change]:
    put = {
        "AutoScalingGroupName": want.asg,
        "PolicyName": want.policy_name,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingConfiguration": {
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
            "TargetValue": want.target_cpu,
        },
    }
    params = {"PutScalingPolicy": put}
    if have.target_cpu is None:
        shown = (f"ASGAverageCPUUtilization: {want.target_cpu:g}",)
        return [Change("create", "scaling_policy", want.policy_name, shown, params)]
    if have.target_cpu != want.target_cpu:
        shown = (f"target: {have.target_cpu:g} -> {want.target_cpu:g}",)
        return [Change("update", "scaling_policy", want.policy_name, shown, params)]
    return []


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want), ctx)


# ---- apply: one handler per (resource, action) --------------------------------------------


def write_role(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "CreateRole" in p:
        ctx.iam.create_role(**ctx.resolve(p["CreateRole"]))
        ctx.report.line(f"  + iam_role {change.name}")
    if "TagRole" in p:
        ctx.iam.tag_role(**ctx.resolve(p["TagRole"]))
    if "PutRolePolicy" in p:
        ctx.iam.put_role_policy(**ctx.resolve(p["PutRolePolicy"]))
        ctx.report.line(f"  ~ iam_role {change.name}: policy ssm-read")


def write_profile(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "CreateInstanceProfile" in p:
        ctx.iam.create_instance_profile(**ctx.resolve(p["CreateInstanceProfile"]))
        ctx.report.line(f"  + iam_instance_profile {change.name}")
    ctx.iam.add_role_to_instance_profile(**ctx.resolve(p["AddRoleToInstanceProfile"]))


def create_template(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateLaunchTemplate"])
    created = propagated(
        ctx, f"launch_template {change.name}", lambda: ctx.ec2.create_launch_template(**args)
    )
    lt = created["LaunchTemplate"]
    ctx.ids["lt"] = lt["LaunchTemplateId"]
    ctx.ids["lt_version"] = str(lt.get("LatestVersionNumber", 1))
    ctx.report.line(f"  + launch_template {change.name} v{ctx.ids['lt_version']}")


def version_template(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateLaunchTemplateVersion"])
    created = propagated(
        ctx,
        f"launch_template {change.name}",
        lambda: ctx.ec2.create_launch_template_version(**args),
    )["LaunchTemplateVersion"]
    ctx.ids["lt_version"] = str(created["VersionNumber"])
    ctx.ec2.modify_launch_template(**ctx.resolve(change.params["ModifyLaunchTemplate"]))
    ctx.report.line(f"  ~ launch_template {change.name} -> v{ctx.ids['lt_version']} (default)")


def delete_template(ctx: Ctx, change: Change) -> None:
    ctx.ec2.delete_launch_template(**ctx.resolve(change.params["DeleteLaunchTemplate"]))
    ctx.report.line(f"  - launch_template {change.name}")


def joined_subnets(args: dict[str, Any]) -> dict[str, Any]:
    if "VPCZoneIdentifier" in args:
        args["VPCZoneIdentifier"] = ",".join(args["VPCZoneIdentifier"])
    return args


def create_group(ctx: Ctx, change: Change) -> None:
    args = joined_subnets(ctx.resolve(change.params["CreateAutoScalingGroup"]))
    propagated(
        ctx,
        f"autoscaling_group {change.name}",
        lambda: ctx.autoscaling.create_auto_scaling_group(**args),
    )
    sizes = f"min {args['MinSize']}, desired {args['DesiredCapacity']}, max {args['MaxSize']}"
    ctx.report.line(f"  + autoscaling_group {change.name} ({sizes})")


def update_group(ctx: Ctx, change: Change) -> None:
    p, autoscaling = change.params, ctx.autoscaling
    if "UpdateAutoScalingGroup" in p:
        args = joined_subnets(ctx.resolve(p["UpdateAutoScalingGroup"]))
        propagated(
            ctx,
            f"autoscaling_group {change.name}",
            lambda: autoscaling.update_auto_scaling_group(**args),
        )
        keys = sorted(k for k in args if k != "AutoScalingGroupName")
        ctx.report.line(f"  ~ autoscaling_group {change.name}: {', '.join(keys)}")
    if "AttachLoadBalancerTargetGroups" in p:
        autoscaling.attach_load_balancer_target_groups(
            **ctx.resolve(p["AttachLoadBalancerTargetGroups"])
        )
    if "CreateOrUpdateTags" in p:
        autoscaling.create_or_update_tags(**ctx.resolve(p["CreateOrUpdateTags"]))
    if "StartInstanceRefresh" in p:
        refresh_id = refresh.start(ctx, ctx.resolve(p["StartInstanceRefresh"]))
        refresh.follow(ctx, change.name, refresh_id)


def put_policy(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["PutScalingPolicy"])
    ctx.autoscaling.put_scaling_policy(**args)
    target = args["TargetTrackingConfiguration"]["TargetValue"]
    ctx.report.line(f"  ~ scaling_policy {change.name}: CPU target {target:g}%")


HANDLERS: Handlers = {
    ("iam_role", "create"): write_role,
    ("iam_role", "update"): write_role,
    ("iam_instance_profile", "create"): write_profile,
    ("iam_instance_profile", "update"): write_profile,
    ("launch_template", "create"): create_template,
    ("launch_template", "update"): version_template,
    ("autoscaling_group", "create"): create_group,
    ("autoscaling_group", "update"): update_group,
    ("scaling_policy", "create"): put_policy,
    ("scaling_policy", "update"): put_policy,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- rolling replacement -------------------------------------------------------------------


def asg_tags(want: Desired) -> dict[str, str]:
    """The ASG's tags, propagated to its instances (ownership + the template's config hash)."""
    instance_tags = tag_dict(want.template_data["TagSpecifications"][0]["Tags"])
    return {**instance_tags, CONFIG_TAG: want.config_hash}


def describe_group(ctx: Ctx, asg: str) -> Any:
    return ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])[
        "AutoScalingGroups"
    ][0]


def instance_configs(ctx: Ctx, asg: str, group: Any | None = None) -> dict[str, tuple[str, str]]:
    """{instance id: (lifecycle state, launch-template-config tag)} of the ASG's instances."""
    if group is None:
        group = describe_group(ctx, asg)
    ids = [i["InstanceId"] for i in group.get("Instances", [])]
    states = {i["InstanceId"]: i["LifecycleState"] for i in group.get("Instances", [])}
    versions: dict[str, str] = {}
    if ids:
        for r in ctx.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in r["Instances"]:
                versions[inst["InstanceId"]] = tag_dict(inst.get("Tags")).get(CONFIG_TAG, "?")
    return {i: (states[i], versions.get(i, "?")) for i in ids}


# ---- destroy / status ----------------------------------------------------------------------


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """The group (and its instances), the template, the role and its profile."""
    d = ctx.d
    return [
        *group_removal(ctx, d.resource_name("asg")),
        *template_removal(ctx, d.resource_name("lt")),
        *role_removal(ctx, d.resource_name("ec2"), teardown),
    ]


def group_removal(ctx: Ctx, asg_name: str) -> list[Change]:
    groups = ctx.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])[
        "AutoScalingGroups"
    ]
    if not groups or not owned(tag_dict(groups[0].get("Tags")), ctx.tags):
        return []
    params = {
        "DeleteAutoScalingGroup": {"AutoScalingGroupName": asg_name, "ForceDelete": True},
        "DescribeAutoScalingGroups": {"AutoScalingGroupNames": [asg_name]},  # until gone
    }
    shown = (f"instances: {len(groups[0].get('Instances', []))} (terminated with it)",)
    return [Change("delete", "autoscaling_group", asg_name, shown, params)]


def template_removal(ctx: Ctx, lt_name: str) -> list[Change]:
    try:
        lt = ctx.ec2.describe_launch_templates(LaunchTemplateNames=[lt_name])["LaunchTemplates"][0]
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidLaunchTemplateName"):
            raise
        return []
    if not owned(tag_dict(lt.get("Tags")), ctx.tags):
        return []
    params = {"DeleteLaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplateId"]}}
    return [Change("delete", "launch_template", lt_name, (), params)]


def role_removal(ctx: Ctx, role: str, teardown: Teardown) -> list[Change]:
    """The profile (named like the role) first, then the role's inline policies and it.
    An adopted role stays as it is, its profile too (unless --include-adopted)."""
    iam = ctx.iam
    try:
        found = iam.get_role(RoleName=role)["Role"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return []
    tags = tag_dict(found.get("Tags"))
    if not owned(tags, ctx.tags):
        return []
    if adopted(tags) and not teardown.include_adopted:
        keep(ctx, "iam_role", role, f"{ADOPTED_KEPT}; its instance profile stays with it")
        return []
    changes: list[Change] = []
    try:
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    else:
        params: dict[str, Any] = {
            "RemoveRoleFromInstanceProfile": [
                {"InstanceProfileName": role, "RoleName": r["RoleName"]}
                for r in profile.get("Roles", [])
            ],
            "DeleteInstanceProfile": {"InstanceProfileName": role},
        }
        changes.append(Change("delete", "iam_instance_profile", role, (), params))
    policies = iam.list_role_policies(RoleName=role)["PolicyNames"]
    params = {
        "DeleteRolePolicy": [{"RoleName": role, "PolicyName": p} for p in policies],
        "DeleteRole": {"RoleName": role},
    }
    shown = tuple(f"inline policy: {p}" for p in policies)
    return [*changes, Change("delete", "iam_role", role, shown, params)]


def remove_group(ctx: Ctx, change: Change) -> None:
    p = change.params
    ctx.autoscaling.delete_auto_scaling_group(**ctx.resolve(p["DeleteAutoScalingGroup"]))
    ctx.report.line(f"  - autoscaling_group {change.name} (and its instances)")
    describe = ctx.resolve(p["DescribeAutoScalingGroups"])

    def gone() -> str | None:
        left = ctx.autoscaling.describe_auto_scaling_groups(**describe)
        return "deleting" if left["AutoScalingGroups"] else None

    ctx.wait_for(f"autoscaling_group {change.name} to be deleted", gone)


def remove_profile(ctx: Ctx, change: Change) -> None:
    p = change.params
    for args in p["RemoveRoleFromInstanceProfile"]:
        ctx.iam.remove_role_from_instance_profile(**ctx.resolve(args))
    ctx.iam.delete_instance_profile(**ctx.resolve(p["DeleteInstanceProfile"]))
    ctx.report.line(f"  - iam_instance_profile {change.name}")


def remove_role(ctx: Ctx, change: Change) -> None:
    p = change.params
    for args in p["DeleteRolePolicy"]:
        ctx.iam.delete_role_policy(**ctx.resolve(args))
    ctx.iam.delete_role(**ctx.resolve(p["DeleteRole"]))
    ctx.report.line(f"  - iam_role {change.name}")


DESTROY_HANDLERS: Handlers = {
    ("autoscaling_group", "delete"): remove_group,
    ("launch_template", "delete"): delete_template,
    ("iam_instance_profile", "delete"): remove_profile,
    ("iam_role", "delete"): remove_role,
}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    if o.asg is None:
        return ["scaling: no autoscaling group"]
    return [
        f"scaling: {want.asg} min {o.asg['min_size']} desired {o.asg['desired']} max "
        f"{o.asg['max_size']}, template v{o.template_version}, CPU target "
        f"{o.target_cpu if o.target_cpu is not None else '-'}",
        *instance_status(ctx, want, o),
        *refresh_status(ctx, want.asg),
    ]


LT_VERSION_TAG = "aws:ec2launchtemplate:version"  # EC2 tags an instance with what it launched


def instance_status(ctx: Ctx, want: Desired, o: Observed) -> list[str]:
    """One line per instance: lifecycle, the group's and the target group's health, the
    launch-template version it launched from and the release that version boots."""
    group = describe_group(ctx, want.asg)
    members = {i["InstanceId"]: i for i in group.get("Instances", [])}
    if not members:
        return ["  instances: none"]
    launched: dict[str, str] = {}
    for r in ctx.ec2.describe_instances(InstanceIds=sorted(members))["Reservations"]:
        for inst in r["Instances"]:
            version = tag_dict(inst.get("Tags")).get(LT_VERSION_TAG)
            if version:
                launched[inst["InstanceId"]] = version
    for i, m in members.items():  # the group's view when EC2 has no tag
        launched.setdefault(i, str(m.get("LaunchTemplate", {}).get("Version", "?")))
    releases = template_releases(ctx, o.template_id, set(launched.values()))
    health = target_health(ctx)
    lines = ["  instances:"]
    for i, m in sorted(members.items()):
        version = launched[i]
        old = "" if o.instances.get(i, ("", ""))[1] == want.config_hash else " (old template)"
        lines.append(
            f"    {i} {m['LifecycleState']}, {m.get('HealthStatus', '?')}, target "
            f"{health.get(i, 'not registered')}, lt v{version}, release "
            f"{releases.get(version, '?')}{old}"
        )
    return lines


def template_releases(ctx: Ctx, template_id: str | None, versions: set[str]) -> dict[str, str]:
    """{launch-template version: the release its user data boots}."""
    numbers = sorted(v for v in versions if v.isdigit())
    if template_id is None or not numbers:
        return {}
    found = ctx.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=numbers
    )["LaunchTemplateVersions"]
    return {
        str(v["VersionNumber"]): baked(v["LaunchTemplateData"].get("UserData"), "VERSION") or "?"
        for v in found
    }


def target_health(ctx: Ctx) -> dict[str, str]:
    """{instance id: its state in the environment's target group}."""
    arn = ctx.ids.get("tg")
    if arn is None:
        try:
            groups = ctx.elbv2.describe_target_groups(Names=[ctx.d.resource_name("tg")])
        except ClientError as exc:
            if error_code(exc) != "TargetGroupNotFound":
                raise
            return {}
        arn = groups["TargetGroups"][0]["TargetGroupArn"]
    described = ctx.elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {t["Target"]["Id"]: t["TargetHealth"].get("State", "?") for t in described}


# ---- a deploy moves the launch template ----------------------------------------------------

# What the deployer puts in a template, in the request's shape (describe answers more keys,
# some only in its own shape). Anything else the source version has, AWS carries over to
# the new version itself (SourceVersion).
METADATA_REQUEST_KEYS = (
    "HttpTokens",
    "HttpPutResponseHopLimit",
    "HttpEndpoint",
    "HttpProtocolIpv6",
    "InstanceMetadataTags",
)


def request_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """A version's LaunchTemplateData (as described) as CreateLaunchTemplateVersion takes it."""
    out: dict[str, Any] = {
        k: data[k] for k in ("ImageId", "InstanceType", "KeyName", "SecurityGroupIds") if k in data
    }
    profile = data.get("IamInstanceProfile") or {}
    if profile.get("Name") or profile.get("Arn"):
        out["IamInstanceProfile"] = (
            {"Name": profile["Name"]} if profile.get("Name") else {"Arn": profile["Arn"]}
        )
    if data.get("MetadataOptions"):
        meta = data["MetadataOptions"]
        out["MetadataOptions"] = {k: meta[k] for k in METADATA_REQUEST_KEYS if k in meta}
    if data.get("TagSpecifications"):
        out["TagSpecifications"] = [
            {"ResourceType": t["ResourceType"], "Tags": t.get("Tags", [])}
            for t in data["TagSpecifications"]
        ]
    return out


@dataclass(frozen=True)
class Moved:
    """Where `move_template` left the launch template and the group."""

    template: str
    version: int
    created: bool  # a new version was made (else the default already booted the release)
    group_moved: bool


def move_template(
    ctx: Ctx, release: str, sha256: str, aws_env: Mapping[str, str] | None = None
) -> Moved | None:
    """A new default launch-template version whose user data boots `release` (the rest of
    the template as it is: a deploy never changes the AMI), and the group moved to it, so
    scale-out and replacement instances boot what the fleet runs. Idempotent. None when
    the environment has no Auto Scaling group. `aws_env`: the hosts' AWS settings (the
    replica's emulator endpoint), else the ones the template carries."""
    check_release(release)
    groups = ctx.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[ctx.d.resource_name("asg")]
    )["AutoScalingGroups"]
    if not groups:
        return None
    group, name = groups[0], ctx.d.resource_name("lt")
    try:
        lt = ctx.ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidLaunchTemplateName"):
            raise
        raise AwsError(
            f"{group['AutoScalingGroupName']} has no launch template {name}: "
            f"`deploy.py apply --env {ctx.env.name}` first"
        ) from None
    template_id, default = lt["LaunchTemplateId"], int(lt["DefaultVersionNumber"])
    current = ctx.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(default)]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    if aws_env is None:
        aws_env = parse_settings(baked(current.get("UserData"), "AWS_ENV") or "")
    text = release_user_data(ctx, release, sha256, aws_env)
    version, created = default, False
    if baked_text(current.get("UserData")) != text:
        data: Any = {**request_data(current), "UserData": base64.b64encode(text.encode()).decode()}
        made = ctx.ec2.create_launch_template_version(
            LaunchTemplateId=template_id,
            SourceVersion=str(default),
            LaunchTemplateData=data,
            VersionDescription=f"release {release} (deploy.py hosts)",
        )["LaunchTemplateVersion"]
        version, created = int(made["VersionNumber"]), True
        ctx.ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(version))
        ctx.report.line(f"launch_template {name} -> v{version} (default): boots {release}")
    spec = group.get("LaunchTemplate", {})
    moved = spec.get("LaunchTemplateId") != template_id or spec.get("Version") != str(version)
    if moved:
        ctx.autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"],
            LaunchTemplate={"LaunchTemplateId": template_id, "Version": str(version)},
        )
        ctx.report.line(f"autoscaling_group {group['AutoScalingGroupName']} -> {name} v{version}")
    retag(ctx, group, template_id, version)
    return Moved(name, version, created, moved)


def baked_text(encoded: str | None) -> str | None:
    try:
        return base64.b64decode(encoded or "").decode()
    except ValueError:
        return None


def retag(ctx: Ctx, group: Mapping[str, Any], template_id: str, version: int) -> None:
    """The group's launch-template-config tag (what `apply` tells old instances from new
    by) follows the new version when that version is what the spec makes for this release;
    a template that differs otherwise (a new AMI) is apply's to change, and says so."""
    ctx.ids["lt"] = template_id
    want = desired(ctx)
    data = ctx.ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(version)]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    have = template_fields(dict(data), ctx)
    differs = sorted(
        k
        for k, v in want.template_fields.items()
        if k != "security_groups" and have.get(k) != v  # ids here, names in the spec
    )
    if differs:
        ctx.report.note(
            f"! the launch template differs from the spec in {', '.join(differs)}: "
            f"`deploy.py plan --env {ctx.env.name}` shows it, apply changes it"
        )
        return
    if tag_dict(group.get("Tags")).get(CONFIG_TAG) != want.config_hash:
        ctx.autoscaling.create_or_update_tags(
            Tags=[
                {
                    "ResourceId": group["AutoScalingGroupName"],
                    "ResourceType": "auto-scaling-group",
                    "Key": CONFIG_TAG,
                    "Value": want.config_hash,
                    "PropagateAtLaunch": True,
                }
            ]
        )


def refresh_status(ctx: Ctx, asg: str) -> list[str]:
    """The latest instance refresh, if any."""
    latest = refresh.latest(ctx, asg)
    if latest is None:
        return []
    return [f"  instance refresh {latest['InstanceRefreshId']}: {refresh.progress(latest)}"]
