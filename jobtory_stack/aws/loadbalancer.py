"""The Application Load Balancer: ALB, target group, listeners.

- internet-facing ALB in the spec's public subnets, in the alb security group; attributes:
  drop invalid header fields, idle timeout, deletion protection (a protected environment)
- target group HTTP:80 with the spec's health check (path, interval, timeout, thresholds,
  matcher) and deregistration delay
- listener 80: redirect 301 to https:443; listener 443: HTTPS with the ACM certificate
  and the spec's TLS policy, forwarding to the target group

Records in ctx.ids: alb, alb_dns, alb_zone, tg. The HTTPS listener refers to the
certificate and the target group, Refs while the plan creates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import (
    ADOPTION_SHOWN,
    Ctx,
    adopted,
    adoption_tags,
    owned,
    settle,
    tag_dict,
    tag_list,
)
from jobtory_stack.aws.family import (
    ADOPTED_KEPT,
    Handlers,
    Teardown,
    dispatch,
    keep,
    protection_refused,
    resources,
)
from jobtory_stack.aws.plan import REFUSED, Change, Ref, field_diffs, fmt

REDIRECT = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}


@dataclass(frozen=True)
class Desired:
    alb: str
    subnets: tuple[str, ...]
    alb_attributes: dict[str, str]
    tg: str
    health: dict[str, Any]
    tg_attributes: dict[str, str]
    ssl_policy: str


@dataclass
class Observed:
    alb_arn: str | None = None
    alb_owned: bool = False
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    alb_attributes: dict[str, str] = field(default_factory=dict)
    tg_arn: str | None = None
    health: dict[str, Any] = field(default_factory=dict)
    tg_attributes: dict[str, str] = field(default_factory=dict)
    listeners: dict[int, dict[str, Any]] = field(default_factory=dict)


def desired(ctx: Ctx) -> Desired:
    alb, hc = ctx.env.alb, ctx.env.alb.health_check
    return Desired(
        alb=ctx.d.resource_name("alb"),
        subnets=tuple(sorted(alb.subnets)),
        alb_attributes={
            "routing.http.drop_invalid_header_fields.enabled": "true",
            "idle_timeout.timeout_seconds": str(alb.idle_timeout_seconds),
            "deletion_protection.enabled": "true" if alb.deletion_protection else "false",
        },
        tg=ctx.d.resource_name("tg"),
        health={
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPath": hc.path,
            "HealthCheckIntervalSeconds": hc.interval_seconds,
            "HealthCheckTimeoutSeconds": hc.timeout_seconds,
            "HealthyThresholdCount": hc.healthy_threshold,
            "UnhealthyThresholdCount": hc.unhealthy_threshold,
            "Matcher": hc.matcher,
        },
        tg_attributes={
            "deregistration_delay.timeout_seconds": str(alb.deregistration_delay_seconds)
        },
        ssl_policy=alb.ssl_policy,
    )


# ---- observed ------------------------------------------------------------------------------


def missing(exc: ClientError) -> bool:
    return error_code(exc) in {"LoadBalancerNotFound", "TargetGroupNotFound"}


def names_of(ctx: Ctx, kind: str) -> dict[str, str]:
    return {v: k.split(":", 1)[1] for k, v in ctx.ids.items() if k.startswith(f"{kind}:")}


def find_alb(ctx: Ctx, name: str) -> dict[str, Any] | None:
    try:
        return dict(ctx.elbv2.describe_load_balancers(Names=[name])["LoadBalancers"][0])
    except ClientError as exc:
        if missing(exc):
            return None
        raise


def find_tg(ctx: Ctx, name: str) -> dict[str, Any] | None:
    try:
        return dict(ctx.elbv2.describe_target_groups(Names=[name])["TargetGroups"][0])
    except ClientError as exc:
        if missing(exc):
            return None
        raise


def tags_of(ctx: Ctx, arn: str) -> dict[str, str]:
    descriptions = ctx.elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
    return tag_dict(descriptions[0].get("Tags") if descriptions else None)


def is_owned(ctx: Ctx, arn: str) -> bool:
    return owned(tags_of(ctx, arn), ctx.tags)


def observe(ctx: Ctx, want: Desired) -> Observed:
    o = Observed()
    elbv2 = ctx.elbv2
    tg = find_tg(ctx, want.tg)
    if tg is not None:
        o.tg_arn = ctx.ids["tg"] = tg["TargetGroupArn"]
        o.health = {k: tg.get(k) for k in want.health if k != "Matcher"}
        o.health["Matcher"] = tg.get("Matcher", {}).get("HttpCode")
        attrs = elbv2.describe_target_group_attributes(TargetGroupArn=o.tg_arn)["Attributes"]
        o.tg_attributes = {a["Key"]: a["Value"] for a in attrs if a["Key"] in want.tg_attributes}
    alb = find_alb(ctx, want.alb)
    if alb is None:
        return o
    o.alb_arn = ctx.ids["alb"] = alb["LoadBalancerArn"]
    ctx.ids["alb_dns"] = alb["DNSName"]
    ctx.ids["alb_zone"] = alb["CanonicalHostedZoneId"]
    o.alb_owned = is_owned(ctx, o.alb_arn)
    subnet_names = names_of(ctx, "subnet")
    o.subnets = sorted(
        subnet_names.get(z["SubnetId"], z["SubnetId"]) for z in alb.get("AvailabilityZones", [])
    )
    sg_names = names_of(ctx, "sg")
    o.security_groups = sorted(sg_names.get(g, g) for g in alb.get("SecurityGroups", []))
    attrs = elbv2.describe_load_balancer_attributes(LoadBalancerArn=o.alb_arn)["Attributes"]
    o.alb_attributes = {a["Key"]: a["Value"] for a in attrs if a["Key"] in want.alb_attributes}
    for listener in elbv2.describe_listeners(LoadBalancerArn=o.alb_arn)["Listeners"]:
        o.listeners[int(listener["Port"])] = dict(listener)
    return o


def listener_fields(listener: dict[str, Any] | None) -> dict[str, Any]:
    """The comparable fields of a listener (desired or observed)."""
    if listener is None:
        return {}
    action = (listener.get("DefaultActions") or [{}])[0]
    fields: dict[str, Any] = {"protocol": listener.get("Protocol"), "action": action.get("Type")}
    if action.get("Type") == "redirect":
        rc = action.get("RedirectConfig", {})
        fields["redirect"] = f"{rc.get('Protocol')}:{rc.get('Port')} {rc.get('StatusCode')}"
    else:
        fields["target_group"] = action.get("TargetGroupArn")
    if listener.get("Protocol") == "HTTPS":
        fields["ssl_policy"] = listener.get("SslPolicy")
        certs = listener.get("Certificates") or [{}]
        fields["certificate"] = certs[0].get("CertificateArn")
    return fields


def desired_listeners(ctx: Ctx, want: Desired) -> dict[int, dict[str, Any]]:
    return {
        80: {
            "Protocol": "HTTP",
            "DefaultActions": [{"Type": "redirect", "RedirectConfig": dict(REDIRECT)}],
        },
        443: {
            "Protocol": "HTTPS",
            "SslPolicy": want.ssl_policy,
            "Certificates": [{"CertificateArn": ctx.ref("cert")}],
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": ctx.ref("tg")}],
        },
    }


# ---- diff ----------------------------------------------------------------------------------


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    return [
        *target_group_changes(want, have, ctx),
        *load_balancer_changes(want, have, ctx),
        *listener_changes(want, have, ctx),
    ]


def attributes(values: dict[str, str], current: dict[str, str]) -> list[Any]:
    return [{"Key": k, "Value": v} for k, v in values.items() if current.get(k) != v]


def target_group_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    tg_arn = have.tg_arn or Ref("tg")
    params: dict[str, Any] = {}
    tg_attrs = attributes(want.tg_attributes, have.tg_attributes)
    modify_attrs = {"TargetGroupArn": tg_arn, "Attributes": tg_attrs}
    if have.tg_arn is None:
        params["CreateTargetGroup"] = {
            "Name": want.tg,
            "Protocol": "HTTP",
            "Port": 80,
            "VpcId": ctx.ref("vpc"),
            "TargetType": "instance",
            "Matcher": {"HttpCode": want.health["Matcher"]},
            "Tags": tag_list(ctx.tags),
            **{k: v for k, v in want.health.items() if k != "Matcher"},
        }
        params["ModifyTargetGroupAttributes"] = modify_attrs
        shown = tuple(f"{k}: {v}" for k, v in want.health.items()) + tuple(
            f"{k}: {v}" for k, v in want.tg_attributes.items()
        )
        return [Change("create", "target_group", want.tg, ("HTTP:80", *shown), params, ("tg",))]
    health_diffs = field_diffs(want.health, have.health)
    if health_diffs:
        params["ModifyTargetGroup"] = {
            "TargetGroupArn": tg_arn,
            "Matcher": {"HttpCode": want.health["Matcher"]},
            **{k: v for k, v in want.health.items() if k not in {"Matcher", "HealthCheckProtocol"}},
        }
    if tg_attrs:
        params["ModifyTargetGroupAttributes"] = modify_attrs
    diffs = health_diffs + field_diffs(want.tg_attributes, have.tg_attributes)
    return [Change("update", "target_group", want.tg, diffs, params)] if diffs else []


def load_balancer_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    alb_arn = have.alb_arn or Ref("alb")
    subnet_ids = [ctx.ref(f"subnet:{n}") for n in want.subnets]
    groups = [ctx.ref("sg:alb")]
    alb_attrs = attributes(want.alb_attributes, have.alb_attributes)
    params: dict[str, Any] = {}
    if alb_attrs:
        params["ModifyLoadBalancerAttributes"] = {
            "LoadBalancerArn": alb_arn,
            "Attributes": alb_attrs,
        }
    if have.alb_arn is None:
        create = {
            "Name": want.alb,
            "Subnets": subnet_ids,
            "SecurityGroups": groups,
            "Scheme": "internet-facing",
            "Type": "application",
            "IpAddressType": "ipv4",
            "Tags": tag_list(ctx.tags),
        }
        shown = (
            f"subnets: {', '.join(want.subnets)}",
            "security_groups: alb",
            *(f"{k}: {v}" for k, v in want.alb_attributes.items()),
        )
        params = {"CreateLoadBalancer": create, **params}
        produces = ("alb", "alb_dns", "alb_zone")
        return [Change("create", "load_balancer", want.alb, shown, params, produces)]
    if have.subnets != list(want.subnets):
        params["SetSubnets"] = {"LoadBalancerArn": alb_arn, "Subnets": subnet_ids}
    if have.security_groups != ["alb"]:
        params["SetSecurityGroups"] = {"LoadBalancerArn": alb_arn, "SecurityGroups": groups}
    diffs = field_diffs(
        {"subnets": list(want.subnets), "security_groups": ["alb"], **want.alb_attributes},
        {"subnets": have.subnets, "security_groups": have.security_groups, **have.alb_attributes},
    )
    if not have.alb_owned:  # an existing ALB with our name: taken over, said so
        diffs += (ADOPTION_SHOWN,)
        params["AddTags"] = {"ResourceArns": [alb_arn], "Tags": adoption_tags(ctx.tags)}
    return [Change("update", "load_balancer", want.alb, diffs, params)] if diffs else []


def listener_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    alb_arn = have.alb_arn or Ref("alb")
    changes: list[Change] = []
    for port, listener in desired_listeners(ctx, want).items():
        got = have.listeners.get(port)
        wanted = listener_fields(listener)
        name = f"{want.alb}:{port}"
        if got is None:
            shown = tuple(f"{k}: {fmt(v)}" for k, v in wanted.items())
            create = {"LoadBalancerArn": alb_arn, "Port": port, "Tags": tag_list(ctx.tags)}
            params = {"CreateListener": {**create, **listener}}
            changes.append(Change("create", "listener", name, shown, params))
            continue
        diffs = field_diffs(wanted, listener_fields(got))
        if diffs:
            modify = {"ListenerArn": got["ListenerArn"], "Port": port, **listener}
            changes.append(Change("update", "listener", name, diffs, {"ModifyListener": modify}))
    for port in sorted(have.listeners.keys() - {80, 443}):
        delete = {"DeleteListener": {"ListenerArn": have.listeners[port]["ListenerArn"]}}
        changes.append(Change("delete", "listener", f"{want.alb}:{port}", (), delete))
    return changes


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want), ctx)


# ---- apply: one handler per (resource, action) --------------------------------------------


def create_target_group(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateTargetGroup"])
    ctx.ids["tg"] = ctx.elbv2.create_target_group(**args)["TargetGroups"][0]["TargetGroupArn"]
    ctx.report.line(f"  + target_group {change.name}")
    modify_target_group_attributes(ctx, change)


def update_target_group(ctx: Ctx, change: Change) -> None:
    if "ModifyTargetGroup" in change.params:
        ctx.elbv2.modify_target_group(**ctx.resolve(change.params["ModifyTargetGroup"]))
        ctx.report.line(f"  ~ target_group {change.name}: health check")
    modify_target_group_attributes(ctx, change)


def modify_target_group_attributes(ctx: Ctx, change: Change) -> None:
    if "ModifyTargetGroupAttributes" in change.params:
        args = ctx.resolve(change.params["ModifyTargetGroupAttributes"])
        ctx.elbv2.modify_target_group_attributes(**args)


def create_load_balancer(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateLoadBalancer"])
    alb = ctx.elbv2.create_load_balancer(**args)["LoadBalancers"][0]
    ctx.ids["alb"] = alb["LoadBalancerArn"]
    ctx.ids["alb_dns"] = alb["DNSName"]
    ctx.ids["alb_zone"] = alb["CanonicalHostedZoneId"]
    ctx.report.line(f"  + load_balancer {change.name} ({alb['DNSName']})")
    update_load_balancer(ctx, change)


def update_load_balancer(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "SetSubnets" in p:
        ctx.elbv2.set_subnets(**ctx.resolve(p["SetSubnets"]))
    if "SetSecurityGroups" in p:
        ctx.elbv2.set_security_groups(**ctx.resolve(p["SetSecurityGroups"]))
    if "AddTags" in p:
        ctx.elbv2.add_tags(**ctx.resolve(p["AddTags"]))
    if "ModifyLoadBalancerAttributes" in p:
        args = ctx.resolve(p["ModifyLoadBalancerAttributes"])
        ctx.elbv2.modify_load_balancer_attributes(**args)
        for a in args["Attributes"]:
            ctx.report.line(f"  ~ load_balancer {change.name}: {a['Key']} = {a['Value']}")


def create_listener(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateListener"])
    ctx.elbv2.create_listener(**args)
    ctx.report.line(f"  + listener {change.name} {args['Protocol']}")


def update_listener(ctx: Ctx, change: Change) -> None:
    ctx.elbv2.modify_listener(**ctx.resolve(change.params["ModifyListener"]))
    ctx.report.line(f"  ~ listener {change.name}")


def delete_listener(ctx: Ctx, change: Change) -> None:
    ctx.elbv2.delete_listener(**ctx.resolve(change.params["DeleteListener"]))
    ctx.report.line(f"  - listener {change.name}")


HANDLERS: Handlers = {
    ("target_group", "create"): create_target_group,
    ("target_group", "update"): update_target_group,
    ("load_balancer", "create"): create_load_balancer,
    ("load_balancer", "update"): update_load_balancer,
    ("listener", "create"): create_listener,
    ("listener", "update"): update_listener,
    ("listener", "delete"): delete_listener,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- destroy / status ----------------------------------------------------------------------


PROTECTION = "deletion_protection.enabled"


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """The ALB (its listeners first), then the target group. An adopted ALB stays as it
    is, with its listeners and so the target group they forward to."""
    want = desired(ctx)
    changes: list[Change] = []
    alb = find_alb(ctx, want.alb)
    tags = tags_of(ctx, alb["LoadBalancerArn"]) if alb is not None else {}
    if alb is not None and owned(tags, ctx.tags):
        if adopted(tags) and not teardown.include_adopted:
            keep(ctx, "load_balancer", want.alb, f"{ADOPTED_KEPT}; its listeners stay with it")
            keep(ctx, "target_group", want.tg, "the adopted load balancer forwards to it")
            ctx.kept.add("load_balancer")  # its names and certificate stay (dns)
            return []
        changes.append(alb_removal(ctx, want.alb, alb["LoadBalancerArn"], teardown))
    tg = find_tg(ctx, want.tg)
    if tg is not None and is_owned(ctx, tg["TargetGroupArn"]):
        delete = {"DeleteTargetGroup": {"TargetGroupArn": tg["TargetGroupArn"]}}
        changes.append(Change("delete", "target_group", want.tg, (), delete))
    return changes


def alb_removal(ctx: Ctx, name: str, arn: str, teardown: Teardown) -> Change:
    elbv2 = ctx.elbv2
    attrs = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    protected = {"Key": PROTECTION, "Value": "true"} in attrs
    shown: tuple[str, ...] = ()
    if protected and not teardown.remove_deletion_protection:
        shown = ("deletion protection: on (kept: destroy never turns it off by itself)",)
        refused = {REFUSED: protection_refused("load_balancer", name)}
        return Change("delete", "load_balancer", name, shown, refused)
    listeners = elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    params: dict[str, Any] = {}
    if protected:
        params["ModifyLoadBalancerAttributes"] = {
            "LoadBalancerArn": arn,
            "Attributes": [{"Key": PROTECTION, "Value": "false"}],
        }
        shown = ("deletion protection: true -> false (--remove-deletion-protection)",)
    params["DeleteListener"] = [{"ListenerArn": li["ListenerArn"]} for li in listeners]
    params["DeleteLoadBalancer"] = {"LoadBalancerArn": arn}
    shown += tuple(f"listener: {li['Protocol']}:{li['Port']}" for li in listeners)
    return Change("delete", "load_balancer", name, shown, params)


def remove_load_balancer(ctx: Ctx, change: Change) -> None:
    p, elbv2 = change.params, ctx.elbv2
    if "ModifyLoadBalancerAttributes" in p:
        elbv2.modify_load_balancer_attributes(**ctx.resolve(p["ModifyLoadBalancerAttributes"]))
        ctx.report.line(f"  ~ load_balancer {change.name}: {PROTECTION} = false")
    for args in p["DeleteListener"]:
        elbv2.delete_listener(**ctx.resolve(args))
    elbv2.delete_load_balancer(**ctx.resolve(p["DeleteLoadBalancer"]))
    ctx.report.line(f"  - load_balancer {change.name} (and its listeners)")


def remove_target_group(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["DeleteTargetGroup"])
    settle(  # a deleted ALB releases its target group a little later
        ctx,
        f"target_group {change.name}",
        lambda: ctx.elbv2.delete_target_group(**args),
        frozenset({"ResourceInUse"}),
    )
    ctx.report.line(f"  - target_group {change.name}")


DESTROY_HANDLERS: Handlers = {
    ("load_balancer", "delete"): remove_load_balancer,
    ("target_group", "delete"): remove_target_group,
}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    if o.alb_arn is None:
        return ["loadbalancer: none"]
    lines = [f"loadbalancer: {want.alb} {ctx.ids.get('alb_dns')} listeners {sorted(o.listeners)}"]
    if o.tg_arn:
        health = ctx.elbv2.describe_target_health(TargetGroupArn=o.tg_arn)
        states = [t["TargetHealth"].get("State", "?") for t in health["TargetHealthDescriptions"]]
        lines.append(
            f"target group: {want.tg} {len(states)} targets "
            f"({', '.join(sorted(set(states))) or 'none'}; moto reports every target healthy)"
            if ctx.emulator
            else f"target group: {want.tg} {len(states)} targets ({', '.join(states) or 'none'})"
        )
    return lines
