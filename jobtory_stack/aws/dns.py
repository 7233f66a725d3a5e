"""Route 53 and ACM: the hosted zone, the certificate, its validation records, the aliases.

- hosted zone for the apex, tagged; its NS records are printed: set them at the registrar
- an ACM certificate IN THE ALB'S REGION for apex + aliases (DNS validation); its CNAME
  validation records are created in the zone and then read back from the zone by the
  deployer itself (moto issues certificates whether or not the records exist, so
  ISSUED proves nothing there); then the delegation is checked (the parent zone's NS
  for the apex must be the zone's: ACM's resolvers find the records only through it) and,
  when missing, apply stops printing exactly the NS records to set at the registrar
  instead of waiting in vain; then a bounded, reported wait for ISSUED
- apex / www A alias records pointing at the ALB (a separate family in the dependency
  order, after the load balancer: `alias_*`)

Records in ctx.ids: zone, cert. Before the certificate is requested its validation
records are unknown: the plan says so, and the handler reads them from the certificate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
from jobtory_stack.aws.delegation import delegated_ns, normalize_ns
from jobtory_stack.aws.family import ADOPTED_KEPT, Handlers, Teardown, dispatch, keep, resources
from jobtory_stack.aws.plan import Change, Ref, fmt
from jobtory_stack.errors import AwsError, DnsError

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


def zone_tags(ctx: Ctx, zid: str) -> dict[str, str]:
    tags = ctx.route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zid)
    return tag_dict(tags["ResourceTagSet"].get("Tags"))


def find_zone(ctx: Ctx, zone: str) -> tuple[str | None, bool]:
    found = ctx.route53.list_hosted_zones_by_name(DNSName=zone, MaxItems="10")["HostedZones"]
    ours: tuple[str | None, bool] = (None, False)
    for z in found:
        if z["Name"] != zone or z.get("Config", {}).get("PrivateZone"):
            continue
        zid = zone_id(z["Id"])
        if owned(zone_tags(ctx, zid), ctx.tags):
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


def name_servers_note(ctx: Ctx, name_servers: list[str]) -> tuple[str, ...]:
    if not name_servers:
        return ()
    return (
        f"! set these NS records at the registrar ({ctx.env.domain.registrar}) for "
        f"{ctx.env.domain.apex}: {' '.join(name_servers)}",
    )


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    return [*zone_changes(want, have, ctx), *certificate_changes(want, have, ctx)]


def zone_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    tag = {"ResourceType": "hostedzone", "ResourceId": Ref("zone"), "AddTags": tag_list(ctx.tags)}
    if have.zone_id is None:
        create = {
            "Name": want.zone,
            "CallerReference": f"{ctx.d.resource_name('zone')}-{uuid.uuid4()}",
            "HostedZoneConfig": {"Comment": f"{ctx.env.stack_name} {ctx.env.name}"},
        }
        params = {"CreateHostedZone": create, "ChangeTagsForResource": tag}
        return [Change("create", "route53_zone", want.zone, (), params, ("zone",))]
    if not have.zone_owned:  # an existing zone for the apex: taken over, said so
        adoption = {**tag, "ResourceId": have.zone_id, "AddTags": adoption_tags(ctx.tags)}
        params = {"ChangeTagsForResource": adoption}
        shown = (ADOPTION_SHOWN,)
        notes = name_servers_note(ctx, have.name_servers)
        return [Change("update", "route53_zone", want.zone, shown, params, notes=notes)]
    return []


def certificate_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    names = ", ".join(want.cert_names)
    changes: list[Change] = []
    if have.cert_arn is None:
        request = {
            "DomainName": want.cert_names[0],
            "SubjectAlternativeNames": list(want.cert_names),
            "ValidationMethod": "DNS",
            # one token per plan: retries of this call reuse it, while a request after a
            # destroy (another plan) gets a new certificate (ACM keeps a token for an hour
            # and would answer a deleted certificate's ARN)
            "IdempotencyToken": uuid.uuid4().hex,
            "Tags": tag_list(ctx.tags),
        }
        params = {"RequestCertificate": request}
        shown = ("validation: DNS",)
        changes.append(Change("create", "acm_certificate", names, shown, params, ("cert",)))
    changes.extend(validation_changes(have, ctx))
    if have.cert_arn is not None and have.validation and have.cert_status != "ISSUED":
        shown = (f"status: {have.cert_status} -> ISSUED (wait for DNS validation)",)
        wait = {"DescribeCertificate": {"CertificateArn": have.cert_arn}}
        changes.append(Change("update", "acm_certificate", names, shown, wait))
    for arn in have.stale_certs:
        delete = {"DeleteCertificate": {"CertificateArn": arn}}
        shown = ("names no longer in the spec",)
        changes.append(Change("delete", "acm_certificate", arn, shown, delete))
    return changes


def validation_changes(have: Observed, ctx: Ctx) -> list[Change]:
    """The validation CNAMEs the zone lacks; before the certificate publishes them (a new
    one), their values are known only after apply: the handler reads them from it."""
    zone = have.zone_id or Ref("zone")
    if have.cert_arn is None or not have.validation:
        shown = ("values: known after the certificate is requested",)
        params: dict[str, Any] = {
            "DescribeCertificate": {"CertificateArn": have.cert_arn or Ref("cert")},
            "ChangeResourceRecordSets": {"HostedZoneId": zone},
        }
        return [Change("create", "route53_record", "acm validation CNAMEs", shown, params)]
    changes: list[Change] = []
    for name in missing_validation(have):
        records = {"HostedZoneId": zone, "ChangeBatch": batch(ctx, [cname(have, name)])}
        params = {"ChangeResourceRecordSets": records}
        title = f"{name} CNAME (acm validation)"
        changes.append(Change("create", "route53_record", title, (), params))
    return changes


def cname(have: Observed, name: str) -> dict[str, Any]:
    value = have.validation[name]
    return {"Name": name, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": value}]}


def batch(ctx: Ctx, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Comment": f"{ctx.env.stack_name} {ctx.env.name}",
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records],
    }


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want), ctx)


# ---- apply: one handler per (resource, action) --------------------------------------------


def create_zone(ctx: Ctx, change: Change) -> None:
    zone = ctx.route53.create_hosted_zone(**ctx.resolve(change.params["CreateHostedZone"]))
    ctx.ids["zone"] = zone_id(zone["HostedZone"]["Id"])
    ctx.report.line(f"  + route53_zone {change.name} ({ctx.ids['zone']})")
    tag_zone(ctx, change)
    name_servers = list(zone.get("DelegationSet", {}).get("NameServers", []))
    for note in name_servers_note(ctx, name_servers):
        ctx.report.note(note)


def tag_zone(ctx: Ctx, change: Change) -> None:
    ctx.route53.change_tags_for_resource(**ctx.resolve(change.params["ChangeTagsForResource"]))


def request_certificate(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["RequestCertificate"])
    ctx.ids["cert"] = ctx.acm.request_certificate(**args)["CertificateArn"]
    ctx.report.line(f"  + acm_certificate {change.name} in {ctx.env.certificate_region}")


def wait_certificate(ctx: Ctx, change: Change) -> None:
    check_delegation(ctx, ctx.ids.get("zone"))
    wait_issued(ctx, ctx.resolve(change.params["DescribeCertificate"])["CertificateArn"])


def check_delegation(ctx: Ctx, zid: str | None) -> None:
    """Before waiting for ACM: the parent zone must delegate the apex to this zone's name
    servers, else validation never comes. Missing: the exact NS records to set, and stop.
    Unknown (no network, an emulator's zone): said, and the wait goes on."""
    apex = ctx.env.domain.apex
    if zid is None:
        return
    lookup = ctx.delegation
    if lookup is None:
        if ctx.emulator:
            ctx.report.line(
                f"  NS delegation of {apex}: not checked (the {ctx.endpoint.emulator} "
                "zone is not on public DNS)"
            )
            return
        lookup = delegated_ns
    zone_ns = normalize_ns(
        ctx.route53.get_hosted_zone(Id=zid).get("DelegationSet", {}).get("NameServers", [])
    )
    try:
        seen = normalize_ns(lookup(apex))
    except DnsError as exc:
        ctx.report.note(f"! NS delegation of {apex}: could not check ({exc}); waiting for ACM")
        return
    if seen and set(seen) <= set(zone_ns):
        ctx.report.line(f"  NS delegation of {apex}: {' '.join(seen)} (the zone's)")
        return
    registrar = ctx.env.domain.registrar
    ctx.report.line(
        f"! {apex} is not delegated to its Route 53 zone {zid}: its parent zone answers NS "
        f"[{' '.join(seen) or 'none'}]. Set exactly these NS records at the registrar "
        f"({registrar}), replacing any others:"
    )
    for ns in zone_ns:
        ctx.report.line(f"    {apex}. NS {ns}.")
    raise AwsError(
        f"ACM cannot validate the certificate until {apex} is delegated to the Route 53 "
        f"zone: set the {len(zone_ns)} NS records above at {registrar}, then re-run apply "
        "(the certificate request is kept; `deploy.py migrate --check --verify-delegation` "
        "shows when the change is live)"
    )


def delete_certificate(ctx: Ctx, change: Change) -> None:
    arn = ctx.resolve(change.params["DeleteCertificate"])["CertificateArn"]
    in_use = ctx.acm.describe_certificate(CertificateArn=arn)["Certificate"].get("InUseBy", [])
    if in_use:
        ctx.report.note(f"! acm_certificate {arn} still in use; re-run apply to delete it")
        return
    ctx.acm.delete_certificate(CertificateArn=arn)
    ctx.report.line(f"  - acm_certificate {arn}")


def create_validation_records(ctx: Ctx, change: Change) -> None:
    """Known records (planned with their values), or the certificate's: read from it once
    it publishes them (known after the request), then ISSUED is waited for."""
    p = change.params
    args = ctx.resolve(p["ChangeResourceRecordSets"])
    zid = args["HostedZoneId"]
    if "ChangeBatch" in args:
        records = {c["ResourceRecordSet"]["Name"]: c for c in args["ChangeBatch"]["Changes"]}
        wanted = {
            n: c["ResourceRecordSet"]["ResourceRecords"][0]["Value"] for n, c in records.items()
        }
    else:
        arn = ctx.resolve(p["DescribeCertificate"])["CertificateArn"]
        wanted = published_validation(ctx, arn)
    write_validation(ctx, zid, wanted)
    if "DescribeCertificate" in p:
        check_delegation(ctx, zid)
        wait_issued(ctx, ctx.resolve(p["DescribeCertificate"])["CertificateArn"])


def published_validation(ctx: Ctx, arn: str) -> dict[str, str]:
    """The certificate's validation records (record name -> value), once ACM has them."""
    validation: dict[str, str] = {}

    def options_ready() -> str | None:
        cert = ctx.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        validation.update(
            {
                fqdn(o["ResourceRecord"]["Name"]): o["ResourceRecord"]["Value"]
                for o in cert.get("DomainValidationOptions", [])
                if o.get("ResourceRecord")
            }
        )
        return None if validation else "validation records not published yet"

    ctx.wait_for("the certificate's validation records", options_ready, timeout=120)
    return validation


def write_validation(ctx: Ctx, zid: str, wanted: dict[str, str]) -> None:
    """Write the records the zone lacks, then read the zone back: moto issues certificates
    regardless, so the deployer checks the records itself."""
    have = Observed(zone_id=zid, validation=wanted, records=record_sets(ctx, zid))
    missing = missing_validation(have)
    if missing:
        records = [cname(have, name) for name in missing]
        upsert: dict[str, Any] = {"HostedZoneId": zid, "ChangeBatch": batch(ctx, records)}
        ctx.route53.change_resource_record_sets(**upsert)
    for name in missing:
        ctx.report.line(f"  + route53_record {name} CNAME (acm validation)")
    have.records = record_sets(ctx, zid)
    still = missing_validation(have)
    if still:
        raise AwsError(
            f"the zone {zid} lacks the certificate's validation records "
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
    ctx.report.line("  acm_certificate ISSUED")


# ---- alias records (apex + aliases -> the ALB), planned after the load balancer ----------


def alias_desired(ctx: Ctx) -> dict[str, dict[str, str | Ref]]:
    dns_name = ctx.ref("alb_dns")
    target: dict[str, str | Ref] = {
        "DNSName": fqdn(dns_name) if isinstance(dns_name, str) else dns_name,
        "HostedZoneId": ctx.ref("alb_zone"),
    }
    return {fqdn(h): dict(target) for h in ctx.d.domain_hosts}


def alias_observed(ctx: Ctx) -> dict[str, dict[str, str]]:
    zid = ctx.ref("zone")
    if isinstance(zid, Ref):  # a zone the plan creates has no records yet
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


def alias_diff(
    want: dict[str, dict[str, str | Ref]], have: dict[str, dict[str, str]], ctx: Ctx
) -> list[Change]:
    changes = []
    for name, target in want.items():
        got = have.get(name)
        if got == target:
            continue
        record = {
            "Name": name,
            "Type": "A",
            "AliasTarget": {**target, "EvaluateTargetHealth": True},
        }
        upsert = {"HostedZoneId": ctx.ref("zone"), "ChangeBatch": batch(ctx, [record])}
        params = {"ChangeResourceRecordSets": upsert}
        if got is None:
            shown = (f"-> {fmt(target['DNSName'])}",)
            changes.append(Change("create", "route53_alias", f"{name} A", shown, params))
        else:
            shown = (f"target: {got['DNSName']} -> {fmt(target['DNSName'])}",)
            changes.append(Change("update", "route53_alias", f"{name} A", shown, params))
    return changes


def alias_plan(ctx: Ctx) -> list[Change]:
    return alias_diff(alias_desired(ctx), alias_observed(ctx), ctx)


def upsert_alias(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["ChangeResourceRecordSets"])
    ctx.route53.change_resource_record_sets(**args)
    for c in args["ChangeBatch"]["Changes"]:
        record = c["ResourceRecordSet"]
        target = fqdn(record["AliasTarget"]["DNSName"])
        ctx.report.line(f"  + route53_alias {record['Name']} A -> {target}")


HANDLERS: Handlers = {
    ("route53_zone", "create"): create_zone,
    ("route53_zone", "update"): tag_zone,
    ("acm_certificate", "create"): request_certificate,
    ("acm_certificate", "update"): wait_certificate,
    ("acm_certificate", "delete"): delete_certificate,
    ("route53_record", "create"): create_validation_records,
    ("route53_alias", "create"): upsert_alias,
    ("route53_alias", "update"): upsert_alias,
}
ALIAS_RESOURCES = frozenset({"route53_alias"})
RESOURCES = resources(HANDLERS) - ALIAS_RESOURCES


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- destroy / status ----------------------------------------------------------------------


# destroy deletes only the records the stack wrote: the apex / alias A records pointing at
# its load balancer, and its certificates' validation CNAMEs. The zone goes only when it
# is the stack's own (not adopted) and holds nothing else besides its NS and SOA.


def our_alias(ctx: Ctx, key: tuple[str, str], rs: dict[str, Any]) -> bool:
    """An A alias at a served name pointing at a load balancer named like the stack's
    (`<stack>-<env>-alb-...elb.amazonaws.com`, with or without `dualstack.`)."""
    name, kind = key
    target = str(rs.get("AliasTarget", {}).get("DNSName", "")).lower().removeprefix("dualstack.")
    return (
        kind == "A"
        and name in {fqdn(h) for h in ctx.d.domain_hosts}
        and target.startswith(f"{ctx.d.resource_name('alb')}-")
    )


def validation_keys(
    records: dict[tuple[str, str], dict[str, Any]], certs: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """The zone's CNAMEs that are exactly the validation records of these certificates."""
    keys: list[tuple[str, str]] = []
    for cert in certs:
        for option in cert.get("DomainValidationOptions", []):
            rr = option.get("ResourceRecord")
            if not rr:
                continue
            key = (fqdn(rr["Name"]), "CNAME")
            values = [r["Value"] for r in records.get(key, {}).get("ResourceRecords", [])]
            if values == [rr["Value"]] and key not in keys:
                keys.append(key)
    return keys


def record_removal(
    resource: str, zid: str, key: tuple[str, str], rs: dict[str, Any], shown: tuple[str, ...]
) -> Change:
    batch = {"Changes": [{"Action": "DELETE", "ResourceRecordSet": rs}]}
    params = {"ChangeResourceRecordSets": {"HostedZoneId": zid, "ChangeBatch": batch}}
    return Change("delete", resource, f"{key[0]} {key[1]}", shown, params)


def alias_destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """The alias records the stack wrote (a kept load balancer keeps its names)."""
    zid, zone_owned = find_zone(ctx, desired(ctx).zone)
    if not zid or not zone_owned:
        return []
    changes = []
    for key, rs in record_sets(ctx, zid).items():
        if not our_alias(ctx, key, rs):
            continue
        if "load_balancer" in ctx.kept:
            keep(ctx, "route53_alias", f"{key[0]} A", "it points at the load balancer kept")
        else:
            changes.append(record_removal("route53_alias", zid, key, rs, ()))
    return changes


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """The certificates' validation CNAMEs, the certificates, then the zone (see above).
    Certificates a kept load balancer still uses stay, with their records."""
    want = desired(ctx)
    certs = [] if "load_balancer" in ctx.kept else owned_certificates(ctx)
    if "load_balancer" in ctx.kept:
        keep(ctx, "acm_certificate", ", ".join(want.cert_names), "the kept load balancer uses it")
    zid, zone_owned = find_zone(ctx, want.zone)
    records = record_sets(ctx, zid) if zid and zone_owned else {}
    ours = validation_keys(records, certs)
    changes = [
        record_removal("route53_record", str(zid), key, records[key], ("acm validation",))
        for key in ours
    ]
    for cert in certs:
        delete = {"DeleteCertificate": {"CertificateArn": cert["CertificateArn"]}}
        changes.append(Change("delete", "acm_certificate", cert["DomainName"], (), delete))
    if zid and zone_owned:
        changes.extend(zone_removal(ctx, want.zone, zid, foreign(ctx, records, ours), teardown))
    return changes


def foreign(
    ctx: Ctx, records: dict[tuple[str, str], dict[str, Any]], ours: list[tuple[str, str]]
) -> list[str]:
    """What the zone still holds once destroy has deleted its own records."""
    left = []
    for (name, kind), rs in records.items():
        if (name, kind) in ours or (name == fqdn(ctx.env.domain.apex) and kind in {"NS", "SOA"}):
            continue
        if our_alias(ctx, (name, kind), rs) and "load_balancer" not in ctx.kept:
            continue  # deleted by the alias family
        left.append(f"{kind} {name}")
    return left


def zone_removal(
    ctx: Ctx, zone: str, zid: str, left: list[str], teardown: Teardown
) -> list[Change]:
    """The zone, unless adopted (and not asked) or holding records the stack did not write."""
    if adopted(zone_tags(ctx, zid)) and not teardown.include_adopted:
        keep(ctx, "route53_zone", zone, ADOPTED_KEPT)
        return []
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        keep(ctx, "route53_zone", zone, f"it holds records this stack did not write: {shown}")
        return []
    return [Change("delete", "route53_zone", zone, (), {"DeleteHostedZone": {"Id": zid}})]


def remove_records(ctx: Ctx, change: Change) -> None:
    ctx.route53.change_resource_record_sets(
        **ctx.resolve(change.params["ChangeResourceRecordSets"])
    )
    ctx.report.line(f"  - {change.resource} {change.name}")


def remove_zone(ctx: Ctx, change: Change) -> None:
    ctx.route53.delete_hosted_zone(**ctx.resolve(change.params["DeleteHostedZone"]))
    ctx.report.line(f"  - route53_zone {change.name}")


def remove_certificate(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["DeleteCertificate"])
    settle(  # a deleted ALB releases its certificate a little later
        ctx,
        f"acm_certificate {change.name} to be released",
        partial(ctx.acm.delete_certificate, **args),
        frozenset({"ResourceInUseException"}),
    )
    ctx.report.line(f"  - acm_certificate {change.name}")


DESTROY_HANDLERS: Handlers = {
    ("route53_alias", "delete"): remove_records,
    ("route53_record", "delete"): remove_records,
    ("route53_zone", "delete"): remove_zone,
    ("acm_certificate", "delete"): remove_certificate,
}
ALIAS_DESTROY_RESOURCES = frozenset({"route53_alias"})
DESTROY_RESOURCES = resources(DESTROY_HANDLERS) - ALIAS_DESTROY_RESOURCES


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


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
