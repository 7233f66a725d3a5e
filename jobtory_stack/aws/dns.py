"""Route 53 and ACM: the hosted zone, the certificate, its validation records, the aliases.

- hosted zone for the apex, tagged; its NS records are printed: set them at the registrar
- an ACM certificate IN THE ALB'S REGION for apex + aliases (DNS validation); its CNAME
  validation records are created in the zone and then read back from the zone by the
  deployer itself (moto issues certificates whether or not the records exist, so
  ISSUED proves nothing there); then a bounded, reported wait for ISSUED
- apex / www A alias records pointing at the ALB (a separate step, after the ALB exists)

Records in ctx.ids: zone, cert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jobtory_stack.aws.core import Change, Ctx, settle, tag_dict, tag_list
from jobtory_stack.errors import AwsError

CERT_WAIT_HINT = (
    "ACM validates by DNS: the registrar's NS must point at the Route 53 zone "
    "(see `deploy.py status`)"
)


def fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def zone_id(raw: str) -> str:
    return raw.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Desired:
    zone: str
    cert_names: tuple[str, ...]


@dataclass
class Observed:
    zone_id: str | None = None
    zone_owned: bool = False
    name_servers: list[str] = field(default_factory=list)
    cert_arn: str | None = None
    cert_status: str | None = None
    stale_certs: list[str] = field(default_factory=list)
    validation: dict[str, str] = field(default_factory=dict)  # record name -> value wanted
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def desired(ctx: Ctx) -> Desired:
    return Desired(fqdn(ctx.env.domain.apex), tuple(ctx.d.certificate_names))


# ---- observed ------------------------------------------------------------------------------


def find_zone(ctx: Ctx, zone: str) -> tuple[str | None, bool]:
    found = ctx.route53.list_hosted_zones_by_name(DNSName=zone, MaxItems="10")["HostedZones"]
    ours: tuple[str | None, bool] = (None, False)
    for z in found:
        if z["Name"] != zone or z.get("Config", {}).get("PrivateZone"):
            continue
        zid = zone_id(z["Id"])
        tags = ctx.route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zid)
        owned = all(
            tag_dict(tags["ResourceTagSet"].get("Tags")).get(k) == v for k, v in ctx.tags.items()
        )
        if owned:
            return zid, True
        if ours[0] is None:
            ours = (zid, False)
    return ours


def record_sets(ctx: Ctx, zid: str) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for page in ctx.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zid):
        for rs in page["ResourceRecordSets"]:
            out[(fqdn(rs["Name"]), rs["Type"])] = dict(rs)
    return out


def owned_certificates(ctx: Ctx) -> list[dict[str, Any]]:
    certs = []
    pages = ctx.acm.get_paginator("list_certificates").paginate(
        CertificateStatuses=["PENDING_VALIDATION", "ISSUED", "INACTIVE", "EXPIRED", "FAILED"]
    )
    for page in pages:
        for summary in page["CertificateSummaryList"]:
            arn = summary["CertificateArn"]
            tags = tag_dict(ctx.acm.list_tags_for_certificate(CertificateArn=arn).get("Tags"))
            if all(tags.get(k) == v for k, v in ctx.tags.items()):
                certs.append(dict(ctx.acm.describe_certificate(CertificateArn=arn)["Certificate"]))
    return certs


def observe(ctx: Ctx, want: Desired) -> Observed:
    o = Observed()
    o.zone_id, o.zone_owned = find_zone(ctx, want.zone)
    if o.zone_id:
        ctx.ids["zone"] = o.zone_id
        zone = ctx.route53.get_hosted_zone(Id=o.zone_id)
        o.name_servers = list(zone.get("DelegationSet", {}).get("NameServers", []))
        o.records = record_sets(ctx, o.zone_id)
    for cert in owned_certificates(ctx):
        names = (cert["DomainName"], *[n for n in cert.get("SubjectAlternativeNames", [])])
        if o.cert_arn is None and sorted(set(names)) == sorted(set(want.cert_names)):
            o.cert_arn, o.cert_status = cert["CertificateArn"], cert.get("Status")
            ctx.ids["cert"] = cert["CertificateArn"]
            for option in cert.get("DomainValidationOptions", []):
                rr = option.get("ResourceRecord")
                if rr:
                    o.validation[fqdn(rr["Name"])] = rr["Value"]
        else:
            o.stale_certs.append(cert["CertificateArn"])
    return o


# ---- diff ----------------------------------------------------------------------------------


def missing_validation(have: Observed) -> list[str]:
    return [
        name
        for name, value in sorted(have.validation.items())
        if [r["Value"] for r in have.records.get((name, "CNAME"), {}).get("ResourceRecords", [])]
        != [value]
    ]


def diff(want: Desired, have: Observed) -> list[Change]:
    changes: list[Change] = []
    if have.zone_id is None:
        changes.append(Change("create", "route53_zone", want.zone))
    elif not have.zone_owned:
        changes.append(Change("update", "route53_zone", want.zone, ("tags: (none) -> stack, env",)))
    if have.cert_arn is None:
        changes.append(
            Change("create", "acm_certificate", ", ".join(want.cert_names), ("validation: DNS",))
        )
        changes.append(
            Change(
                "create",
                "route53_record",
                "acm validation CNAMEs",
                ("values: known after the certificate is requested",),
            )
        )
    else:
        for name in missing_validation(have):
            changes.append(Change("create", "route53_record", f"{name} CNAME (acm validation)"))
        if have.cert_status != "ISSUED":
            changes.append(
                Change(
                    "update",
                    "acm_certificate",
                    ", ".join(want.cert_names),
                    (f"status: {have.cert_status} -> ISSUED (wait for DNS validation)",),
                )
            )
    for arn in have.stale_certs:
        changes.append(Change("delete", "acm_certificate", arn, ("names no longer in the spec",)))
    return changes


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want))


# ---- apply ---------------------------------------------------------------------------------


def upsert(ctx: Ctx, zid: str, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    ctx.route53.change_resource_record_sets(
        HostedZoneId=zid,
        ChangeBatch={
            "Comment": f"{ctx.env.stack_name} {ctx.env.name}",
            "Changes": [
                {"Action": "UPSERT", "ResourceRecordSet": r}  # type: ignore[typeddict-item]
                for r in records
            ],
        },
    )


def apply(ctx: Ctx, changes: list[Change]) -> None:
    want = desired(ctx)
    have = observe(ctx, want)
    route53, acm = ctx.route53, ctx.acm
    if have.zone_id is None:
        zone = route53.create_hosted_zone(
            Name=want.zone,
            CallerReference=f"{ctx.d.resource_name('zone')}-{uuid.uuid4()}",
            HostedZoneConfig={"Comment": f"{ctx.env.stack_name} {ctx.env.name}"},
        )
        have.zone_id = ctx.ids["zone"] = zone_id(zone["HostedZone"]["Id"])
        have.name_servers = list(zone.get("DelegationSet", {}).get("NameServers", []))
        ctx.out(f"  + route53_zone {want.zone} ({have.zone_id})")
        have.zone_owned = False
    if not have.zone_owned:
        route53.change_tags_for_resource(
            ResourceType="hostedzone",
            ResourceId=have.zone_id,
            AddTags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        print_name_servers(ctx, have.name_servers)
    if have.cert_arn is None:
        have.cert_arn = acm.request_certificate(
            DomainName=want.cert_names[0],
            SubjectAlternativeNames=list(want.cert_names),
            ValidationMethod="DNS",
            # one token per call: botocore's retries of this call reuse it, while a request
            # after a destroy gets a new certificate (ACM keeps a token for an hour, and
            # would answer a deleted certificate's ARN)
            IdempotencyToken=uuid.uuid4().hex,
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )["CertificateArn"]
        ctx.ids["cert"] = have.cert_arn
        ctx.out(f"  + acm_certificate {', '.join(want.cert_names)} in {ctx.env.certificate_region}")
        have.cert_status = "PENDING_VALIDATION"
    if have.cert_status != "ISSUED" or missing_validation(have) or not have.validation:
        ensure_validation_records(ctx, have)
        wait_issued(ctx, have.cert_arn)
    for arn in have.stale_certs:
        in_use = acm.describe_certificate(CertificateArn=arn)["Certificate"].get("InUseBy", [])
        if in_use:
            ctx.note(f"! acm_certificate {arn} still in use; re-run apply to delete it")
            continue
        acm.delete_certificate(CertificateArn=arn)
        ctx.out(f"  - acm_certificate {arn}")


def ensure_validation_records(ctx: Ctx, have: Observed) -> None:
    assert have.zone_id is not None and have.cert_arn is not None

    def options_ready() -> str | None:
        cert = ctx.acm.describe_certificate(CertificateArn=have.cert_arn or "")["Certificate"]
        have.validation = {
            fqdn(o["ResourceRecord"]["Name"]): o["ResourceRecord"]["Value"]
            for o in cert.get("DomainValidationOptions", [])
            if o.get("ResourceRecord")
        }
        return None if have.validation else "validation records not published yet"

    ctx.wait_for("the certificate's validation records", options_ready, timeout=120)
    missing = missing_validation(have)
    upsert(
        ctx,
        have.zone_id,
        [
            {
                "Name": name,
                "Type": "CNAME",
                "TTL": 300,
                "ResourceRecords": [{"Value": have.validation[name]}],
            }
            for name in missing
        ],
    )
    for name in missing:
        ctx.out(f"  + route53_record {name} CNAME (acm validation)")
    # read the zone back: moto issues certificates regardless, so check the records ourselves
    have.records = record_sets(ctx, have.zone_id)
    still = missing_validation(have)
    if still:
        raise AwsError(
            f"the zone {have.zone_id} lacks the certificate's validation records "
            f"({', '.join(still)}) after writing them; re-run apply"
        )


def wait_issued(ctx: Ctx, arn: str) -> None:
    def check() -> str | None:
        status = ctx.acm.describe_certificate(CertificateArn=arn)["Certificate"].get("Status")
        if status == "ISSUED":
            return None
        if status in {"FAILED", "REVOKED", "EXPIRED", "VALIDATION_TIMED_OUT"}:
            raise AwsError(f"the certificate {arn} is {status}: delete it and re-run apply")
        return f"{status} ({CERT_WAIT_HINT})"

    ctx.wait_for("the ACM certificate to be ISSUED", check)
    ctx.out("  acm_certificate ISSUED")


def print_name_servers(ctx: Ctx, name_servers: list[str]) -> None:
    if not name_servers:
        return
    ctx.note(
        f"! set these NS records at the registrar ({ctx.env.domain.registrar}) for "
        f"{ctx.env.domain.apex}: {' '.join(name_servers)}"
    )


# ---- alias records (apex + aliases -> the ALB), applied after the load balancer ----------


def alias_desired(ctx: Ctx) -> dict[str, dict[str, str]]:
    dns_name = fqdn(ctx.ids["alb_dns"]) if "alb_dns" in ctx.ids else "(the ALB, after apply)"
    zone = ctx.ids.get("alb_zone", "(after apply)")
    return {fqdn(h): {"DNSName": dns_name, "HostedZoneId": zone} for h in ctx.d.domain_hosts}


def alias_observed(ctx: Ctx) -> dict[str, dict[str, str]]:
    zid = ctx.ids.get("zone")
    if not zid:
        return {}
    found = {}
    for (name, kind), rs in record_sets(ctx, zid).items():
        target = rs.get("AliasTarget")
        if kind == "A" and target:
            found[name] = {
                "DNSName": fqdn(str(target["DNSName"]).removeprefix("dualstack.")),
                "HostedZoneId": str(target["HostedZoneId"]),
            }
    return found


def alias_diff(want: dict[str, dict[str, str]], have: dict[str, dict[str, str]]) -> list[Change]:
    changes = []
    for name, target in want.items():
        got = have.get(name)
        if got is None:
            changes.append(
                Change("create", "route53_alias", f"{name} A", (f"-> {target['DNSName']}",))
            )
        elif got != target:
            changes.append(
                Change(
                    "update",
                    "route53_alias",
                    f"{name} A",
                    (f"target: {got['DNSName']} -> {target['DNSName']}",),
                )
            )
    return changes


def alias_plan(ctx: Ctx) -> list[Change]:
    return alias_diff(alias_desired(ctx), alias_observed(ctx))


def alias_apply(ctx: Ctx, changes: list[Change]) -> None:
    if not changes:
        return
    want = alias_desired(ctx)
    have = alias_observed(ctx)
    records: list[dict[str, Any]] = [
        {
            "Name": name,
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": target["HostedZoneId"],
                "DNSName": target["DNSName"],
                "EvaluateTargetHealth": True,
            },
        }
        for name, target in want.items()
        if have.get(name) != target
    ]
    upsert(ctx, ctx.ids["zone"], records)
    for r in records:
        ctx.out(f"  + route53_alias {r['Name']} A -> {r['AliasTarget']['DNSName']}")


# ---- destroy / status ----------------------------------------------------------------------


def destroy(ctx: Ctx) -> int:
    want = desired(ctx)
    count = 0
    zid, owned = find_zone(ctx, want.zone)
    if zid and owned:
        deletions = [
            rs
            for (name, kind), rs in record_sets(ctx, zid).items()
            if not (name == want.zone and kind in {"NS", "SOA"})
        ]
        if deletions:
            ctx.route53.change_resource_record_sets(
                HostedZoneId=zid,
                ChangeBatch={
                    "Changes": [
                        {"Action": "DELETE", "ResourceRecordSet": rs}  # type: ignore[typeddict-item]
                        for rs in deletions
                    ]
                },
            )
        ctx.route53.delete_hosted_zone(Id=zid)
        ctx.out(f"  - route53_zone {want.zone} ({len(deletions)} records)")
        count += 1
    for cert in owned_certificates(ctx):
        arn = cert["CertificateArn"]
        settle(  # a deleted ALB releases its certificate a little later
            ctx,
            f"acm_certificate {arn} to be released",
            partial(ctx.acm.delete_certificate, CertificateArn=arn),
            frozenset({"ResourceInUseException"}),
        )
        ctx.out(f"  - acm_certificate {cert['DomainName']}")
        count += 1
    return count


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    lines = []
    if o.zone_id:
        lines.append(f"dns: zone {want.zone} ({o.zone_id}) NS: {' '.join(o.name_servers)}")
    else:
        lines.append(f"dns: no zone for {want.zone}")
    lines.append(f"certificate: {o.cert_status or 'none'} for {', '.join(want.cert_names)}")
    return lines
