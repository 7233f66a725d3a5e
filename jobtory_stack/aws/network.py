"""The network: VPC, public/private subnets, internet gateway, route tables, security groups.

Security groups form a chain: `alb` admits 80/443 from anywhere; `ec2` admits 80 only
from the alb group (and 22 only from network.admin_cidr, none by default); `rds`
admits 5432 only from the ec2 group. Private subnets get a route table without an
internet route (the database lives there).

Records in ctx.ids: vpc, igw, subnet:<name>, rt:public|private, sg:alb|ec2|rds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jobtory_stack.aws.core import Action, Change, Ctx, field_diffs, settle, tag_dict, tag_list
from jobtory_stack.errors import AwsError

ANYWHERE = "0.0.0.0/0"
SG_ROLES = ("alb", "ec2", "rds")
POSTGRES = 5432


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress rule: TCP `port` from a CIDR ("cidr:...") or a role's group ("sg:alb")."""

    port: int
    source: str

    def __str__(self) -> str:
        return f"tcp/{self.port} from {self.source.split(':', 1)[1]}"


@dataclass(frozen=True)
class SubnetSpec:
    name: str
    cidr: str
    az: str
    public: bool


@dataclass(frozen=True)
class Desired:
    vpc_cidr: str
    subnets: dict[str, SubnetSpec]
    rules: dict[str, frozenset[Rule]]


@dataclass
class Observed:
    vpc_id: str | None = None
    vpc_cidr: str | None = None
    dns_hostnames: bool = False
    igw_id: str | None = None
    igw_attached: bool = False
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> fields + id
    route_tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # public|private
    groups: dict[str, str] = field(default_factory=dict)  # role -> group id
    rules: dict[str, frozenset[Rule]] = field(default_factory=dict)


def name(ctx: Ctx, kind: str) -> str:
    return ctx.d.resource_name(kind)


def tag_spec(ctx: Ctx, resource_type: str, kind: str) -> list[Any]:
    return [
        {
            "ResourceType": resource_type,
            "Tags": tag_list({**ctx.tags, "Name": name(ctx, kind)}),
        }
    ]


def owner_filters(ctx: Ctx) -> list[Any]:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in ctx.tags.items()]


# ---- desired -------------------------------------------------------------------------------


def desired(ctx: Ctx) -> Desired:
    net = ctx.env.network
    ec2_rules = {Rule(80, "sg:alb")}
    if net.admin_cidr:
        ec2_rules.add(Rule(22, f"cidr:{net.admin_cidr}"))
    return Desired(
        vpc_cidr=net.vpc_cidr,
        subnets={s.name: SubnetSpec(s.name, s.cidr, s.az, s.public) for s in net.subnets},
        rules={
            "alb": frozenset({Rule(80, f"cidr:{ANYWHERE}"), Rule(443, f"cidr:{ANYWHERE}")}),
            "ec2": frozenset(ec2_rules),
            "rds": frozenset({Rule(POSTGRES, "sg:ec2")}),
        },
    )


# ---- observed ------------------------------------------------------------------------------


def find_vpc(ctx: Ctx) -> dict[str, Any] | None:
    vpcs = ctx.ec2.describe_vpcs(Filters=owner_filters(ctx))["Vpcs"]
    return dict(vpcs[0]) if vpcs else None


def observe(ctx: Ctx) -> Observed:
    o = Observed()
    vpc = find_vpc(ctx)
    if vpc is None:
        return o
    ec2 = ctx.ec2
    o.vpc_id, o.vpc_cidr = vpc["VpcId"], vpc["CidrBlock"]
    ctx.ids["vpc"] = vpc["VpcId"]
    o.dns_hostnames = ec2.describe_vpc_attribute(
        VpcId=vpc["VpcId"], Attribute="enableDnsHostnames"
    )["EnableDnsHostnames"].get("Value", False)
    in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    prefix = name(ctx, "")
    for igw in ec2.describe_internet_gateways(Filters=owner_filters(ctx))["InternetGateways"]:
        o.igw_id = igw["InternetGatewayId"]
        o.igw_attached = any(a["VpcId"] == vpc["VpcId"] for a in igw.get("Attachments", []))
        ctx.ids["igw"] = o.igw_id
    for s in ec2.describe_subnets(Filters=in_vpc + owner_filters(ctx))["Subnets"]:
        sname = tag_dict(s.get("Tags")).get("Name", "")[len(prefix) :]
        o.subnets[sname] = {
            "id": s["SubnetId"],
            "cidr": s["CidrBlock"],
            "az": s["AvailabilityZone"],
            "map_public_ip": s.get("MapPublicIpOnLaunch", False),
        }
        ctx.ids[f"subnet:{sname}"] = s["SubnetId"]
    for rt in ec2.describe_route_tables(Filters=in_vpc + owner_filters(ctx))["RouteTables"]:
        kind = tag_dict(rt.get("Tags")).get("Name", "")[len(prefix) :].removesuffix("-rt")
        o.route_tables[kind] = {
            "id": rt["RouteTableId"],
            "routes": {
                r.get("DestinationCidrBlock", ""): r.get("GatewayId", "")
                for r in rt.get("Routes", [])
            },
            "associations": {
                a["SubnetId"]: a["RouteTableAssociationId"]
                for a in rt.get("Associations", [])
                if a.get("SubnetId")
            },
        }
        ctx.ids[f"rt:{kind}"] = rt["RouteTableId"]
    groups = ec2.describe_security_groups(Filters=in_vpc + owner_filters(ctx))["SecurityGroups"]
    for g in groups:
        role = g["GroupName"][len(prefix) :]
        o.groups[role] = g["GroupId"]
        ctx.ids[f"sg:{role}"] = g["GroupId"]
    by_id = {gid: role for role, gid in o.groups.items()}
    for g in groups:
        rules: set[Rule] = set()
        for perm in g.get("IpPermissions", []):
            port = int(perm.get("FromPort", -1))
            for r in perm.get("IpRanges", []):
                rules.add(Rule(port, f"cidr:{r['CidrIp']}"))
            for pair in perm.get("UserIdGroupPairs", []):
                gid = pair.get("GroupId", "")
                rules.add(Rule(port, f"sg:{by_id.get(gid, gid)}"))
        o.rules[by_id[g["GroupId"]]] = frozenset(rules)
    return o


# ---- diff ----------------------------------------------------------------------------------


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    changes: list[Change] = []
    if have.vpc_id is None:
        changes.append(Change("create", "vpc", name(ctx, "vpc"), (f"cidr: {want.vpc_cidr}",)))
    else:
        diffs = field_diffs(
            {"cidr": want.vpc_cidr, "dns_hostnames": True},
            {"cidr": have.vpc_cidr, "dns_hostnames": have.dns_hostnames},
        )
        if diffs:
            changes.append(Change("update", "vpc", name(ctx, "vpc"), diffs))
    if have.igw_id is None or not have.igw_attached:
        action: Action = "create" if have.igw_id is None else "update"
        changes.append(
            Change(action, "internet_gateway", name(ctx, "igw"), ("attached: to the vpc",))
        )
    for sname, s in want.subnets.items():
        o = have.subnets.get(sname)
        want_fields = {"cidr": s.cidr, "az": s.az, "map_public_ip": s.public}
        if o is None:
            changes.append(
                Change("create", "subnet", name(ctx, sname), (f"cidr: {s.cidr} ({s.az})",), s)
            )
        elif o["cidr"] != s.cidr or o["az"] != s.az:
            changes.append(Change("delete", "subnet", name(ctx, sname), (), sname))
            changes.append(
                Change("create", "subnet", name(ctx, sname), field_diffs(want_fields, o), s)
            )
        elif o["map_public_ip"] != s.public:
            changes.append(
                Change("update", "subnet", name(ctx, sname), field_diffs(want_fields, o), s)
            )
    for sname in sorted(have.subnets.keys() - want.subnets.keys()):
        changes.append(Change("delete", "subnet", name(ctx, sname), (), sname))
    for kind in ("public", "private"):
        members = sorted(n for n, s in want.subnets.items() if s.public == (kind == "public"))
        o = have.route_tables.get(kind)
        rt_name = name(ctx, f"{kind}-rt")
        if o is None:
            shown: list[str] = [f"subnets: {', '.join(members)}"]
            if kind == "public":
                shown.insert(0, f"route: {ANYWHERE} -> internet gateway")
            changes.append(Change("create", "route_table", rt_name, tuple(shown), (kind, members)))
            continue
        diffs_rt: list[str] = []
        if kind == "public" and not o["routes"].get(ANYWHERE, "").startswith("igw-"):
            diffs_rt.append(f"route {ANYWHERE}: (none) -> internet gateway")
        associated = sorted(n for n, sub in have.subnets.items() if sub["id"] in o["associations"])
        if associated != members:
            diffs_rt.append(f"subnets: {', '.join(associated) or '(none)'} -> {', '.join(members)}")
        if diffs_rt:
            changes.append(
                Change("update", "route_table", rt_name, tuple(diffs_rt), (kind, members))
            )
    for role in SG_ROLES:
        wanted = want.rules[role]
        sg_name = name(ctx, role)
        if role not in have.groups:
            created = tuple(f"ingress: {r}" for r in sorted(wanted))
            changes.append(Change("create", "security_group", sg_name, created, role))
            continue
        got = have.rules.get(role, frozenset())
        rule_diffs = tuple(f"+ ingress {r}" for r in sorted(wanted - got)) + tuple(
            f"- ingress {r}" for r in sorted(got - wanted)
        )
        if rule_diffs:
            changes.append(Change("update", "security_group", sg_name, rule_diffs, role))
    return changes


def plan(ctx: Ctx) -> list[Change]:
    return diff(desired(ctx), observe(ctx), ctx)


# ---- apply ---------------------------------------------------------------------------------


def permission(ctx: Ctx, rule: Rule) -> Any:
    perm: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": rule.port, "ToPort": rule.port}
    kind, source = rule.source.split(":", 1)
    if kind == "cidr":
        perm["IpRanges"] = [{"CidrIp": source}]
    else:
        perm["UserIdGroupPairs"] = [{"GroupId": ctx.ids.get(f"sg:{source}", source)}]
    return perm


def apply(ctx: Ctx, changes: list[Change]) -> None:
    if not changes:
        return
    ec2 = ctx.ec2
    want = desired(ctx)
    have = observe(ctx)
    if have.vpc_id is None:
        vpc = ec2.create_vpc(
            CidrBlock=want.vpc_cidr, TagSpecifications=tag_spec(ctx, "vpc", "vpc")
        )["Vpc"]
        have.vpc_id = ctx.ids["vpc"] = vpc["VpcId"]
        have.vpc_cidr = want.vpc_cidr
        ctx.out(f"  + vpc {name(ctx, 'vpc')} ({have.vpc_id})")
    elif have.vpc_cidr != want.vpc_cidr:
        raise AwsError(
            f"the VPC's CIDR is {have.vpc_cidr}, the spec says {want.vpc_cidr}: a VPC block "
            "cannot change in place; destroy the environment first or restore the spec"
        )
    vpc_id = have.vpc_id
    if not have.dns_hostnames:
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        ctx.out(f"  ~ vpc {name(ctx, 'vpc')}: dns_hostnames -> true")
    if have.igw_id is None:
        igw = ec2.create_internet_gateway(
            TagSpecifications=tag_spec(ctx, "internet-gateway", "igw")
        )["InternetGateway"]
        have.igw_id = ctx.ids["igw"] = igw["InternetGatewayId"]
        ctx.out(f"  + internet_gateway {name(ctx, 'igw')} ({have.igw_id})")
    if not have.igw_attached:
        ec2.attach_internet_gateway(InternetGatewayId=have.igw_id, VpcId=vpc_id)
        have.igw_attached = True
    for change in changes:
        if change.resource == "subnet" and change.action == "delete":
            sid = have.subnets.pop(change.data, {}).get("id")
            if sid:
                ec2.delete_subnet(SubnetId=sid)
                ctx.out(f"  - subnet {change.name}")
    for sname, s in want.subnets.items():
        o = have.subnets.get(sname)
        if o is None:
            sub = ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=s.cidr,
                AvailabilityZone=s.az,
                TagSpecifications=tag_spec(ctx, "subnet", sname),
            )["Subnet"]
            o = have.subnets[sname] = {
                "id": sub["SubnetId"],
                "cidr": s.cidr,
                "az": s.az,
                "map_public_ip": False,
            }
            ctx.ids[f"subnet:{sname}"] = sub["SubnetId"]
            ctx.out(f"  + subnet {name(ctx, sname)} ({sub['SubnetId']})")
        if o["map_public_ip"] != s.public:
            ec2.modify_subnet_attribute(SubnetId=o["id"], MapPublicIpOnLaunch={"Value": s.public})
            o["map_public_ip"] = s.public
    for kind in ("public", "private"):
        rt = have.route_tables.get(kind)
        if rt is None:
            created = ec2.create_route_table(
                VpcId=vpc_id, TagSpecifications=tag_spec(ctx, "route-table", f"{kind}-rt")
            )["RouteTable"]
            rt = have.route_tables[kind] = {
                "id": created["RouteTableId"],
                "routes": {},
                "associations": {},
            }
            ctx.ids[f"rt:{kind}"] = rt["id"]
            ctx.out(f"  + route_table {name(ctx, kind + '-rt')} ({rt['id']})")
        if kind == "public" and not rt["routes"].get(ANYWHERE, "").startswith("igw-"):
            ec2.create_route(
                RouteTableId=rt["id"], DestinationCidrBlock=ANYWHERE, GatewayId=have.igw_id
            )
        for sname, s in want.subnets.items():
            sid = have.subnets[sname]["id"]
            if s.public == (kind == "public") and sid not in rt["associations"]:
                replace_association(ctx, sid, rt["id"])
    apply_groups(ctx, want, have)


def replace_association(ctx: Ctx, subnet_id: str, route_table_id: str) -> None:
    """Associate, moving the subnet off another (non-main) route table if needed."""
    current = ctx.ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["RouteTables"]
    for rt in current:
        for a in rt.get("Associations", []):
            if a.get("SubnetId") == subnet_id:
                ctx.ec2.replace_route_table_association(
                    AssociationId=a["RouteTableAssociationId"], RouteTableId=route_table_id
                )
                return
    ctx.ec2.associate_route_table(SubnetId=subnet_id, RouteTableId=route_table_id)


def apply_groups(ctx: Ctx, want: Desired, have: Observed) -> None:
    ec2 = ctx.ec2
    assert have.vpc_id is not None
    for role in SG_ROLES:
        if role not in have.groups:
            gid = ec2.create_security_group(
                GroupName=name(ctx, role),
                Description=f"{ctx.env.stack_name} {ctx.env.name} {role}",
                VpcId=have.vpc_id,
                TagSpecifications=tag_spec(ctx, "security-group", role),
            )["GroupId"]
            have.groups[role] = ctx.ids[f"sg:{role}"] = gid
            ctx.out(f"  + security_group {name(ctx, role)} ({gid})")
    for role in SG_ROLES:
        wanted = want.rules[role]
        got = have.rules.get(role, frozenset())
        gid = have.groups[role]
        add = sorted(wanted - got)
        remove = sorted(got - wanted)
        if add:
            ec2.authorize_security_group_ingress(
                GroupId=gid, IpPermissions=[permission(ctx, r) for r in add]
            )
        if remove:
            ec2.revoke_security_group_ingress(
                GroupId=gid, IpPermissions=[permission(ctx, r) for r in remove]
            )
        for r in add:
            ctx.out(f"  ~ security_group {name(ctx, role)}: + ingress {r}")
        for r in remove:
            ctx.out(f"  ~ security_group {name(ctx, role)}: - ingress {r}")


# ---- destroy / status ----------------------------------------------------------------------


def destroy(ctx: Ctx) -> int:
    ec2 = ctx.ec2
    count = 0
    vpcs = ec2.describe_vpcs(Filters=owner_filters(ctx))["Vpcs"]
    for vpc in vpcs:
        vpc_id = vpc["VpcId"]
        in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
        groups = ec2.describe_security_groups(Filters=in_vpc + owner_filters(ctx))["SecurityGroups"]
        for g in groups:  # break the alb -> ec2 -> rds references first
            if g.get("IpPermissions"):
                ec2.revoke_security_group_ingress(
                    GroupId=g["GroupId"],
                    IpPermissions=g["IpPermissions"],
                )
        for g in groups:
            gid = g["GroupId"]
            settle(ctx, f"security_group {gid}", partial(ec2.delete_security_group, GroupId=gid))
            ctx.out(f"  - security_group {g['GroupName']}")
            count += 1
        for s in ec2.describe_subnets(Filters=in_vpc + owner_filters(ctx))["Subnets"]:
            sid = s["SubnetId"]
            settle(ctx, f"subnet {sid}", partial(ec2.delete_subnet, SubnetId=sid))
            ctx.out(f"  - subnet {tag_dict(s.get('Tags')).get('Name', s['SubnetId'])}")
            count += 1
        for rt in ec2.describe_route_tables(Filters=in_vpc + owner_filters(ctx))["RouteTables"]:
            for a in rt.get("Associations", []):
                if not a.get("Main") and a.get("RouteTableAssociationId"):
                    ec2.disassociate_route_table(AssociationId=a["RouteTableAssociationId"])
            ec2.delete_route_table(RouteTableId=rt["RouteTableId"])
            ctx.out(f"  - route_table {tag_dict(rt.get('Tags')).get('Name', rt['RouteTableId'])}")
            count += 1
        igws = ec2.describe_internet_gateways(Filters=owner_filters(ctx))["InternetGateways"]
        for igw in igws:
            igw_id = igw["InternetGatewayId"]
            for attachment in igw.get("Attachments", []):
                settle(
                    ctx,
                    f"internet_gateway {igw_id} to detach",
                    partial(
                        ec2.detach_internet_gateway,
                        InternetGatewayId=igw_id,
                        VpcId=attachment["VpcId"],
                    ),
                )
            ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
            ctx.out(f"  - internet_gateway {igw['InternetGatewayId']}")
            count += 1
        try:
            settle(ctx, f"vpc {vpc_id}", partial(ec2.delete_vpc, VpcId=vpc_id))
        except AwsError:
            raise AwsError(
                f"the VPC {vpc_id} still holds resources this stack does not own "
                "(DependencyViolation); remove them and re-run destroy"
            ) from None
        ctx.out(f"  - vpc {tag_dict(vpc.get('Tags')).get('Name', vpc_id)}")
        count += 1
    return count


def status(ctx: Ctx) -> list[str]:
    o = observe(ctx)
    if o.vpc_id is None:
        return ["network: no VPC"]
    return [
        f"network: vpc {o.vpc_id} {o.vpc_cidr}, {len(o.subnets)} subnets, "
        f"security groups: {', '.join(f'{r}={g}' for r, g in o.groups.items())}"
    ]
