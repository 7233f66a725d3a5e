"""The network: VPC, public/private subnets, internet gateway, route tables, security groups.

Security groups form a chain: `alb` admits 80/443 from anywhere; `ec2` admits 80 only
from the alb group (and 22 only from network.admin_cidr, none by default); `rds`
admits 5432 only from the ec2 group. Private subnets get a route table without an
internet route (the database lives there).

Records in ctx.ids: vpc, igw, subnet:<name>, rt:public|private, sg:alb|ec2|rds. A plan on
an empty account refers to them as Refs (known after apply); nothing can exist inside a
VPC that does not exist yet, so observing stops there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from jobtory_stack.aws.core import Ctx, owned, settle, tag_dict, tag_list
from jobtory_stack.aws.family import Handlers, Teardown, dispatch, resources
from jobtory_stack.aws.plan import REFUSED, Change, Ref, field_diffs
from jobtory_stack.errors import AwsError

ANYWHERE = "0.0.0.0/0"
SG_ROLES = ("alb", "ec2", "rds")
POSTGRES = 5432


ALL = "-1"  # IpProtocol: every protocol and port


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress rule: `port` (to `to_port`) of `protocol` (tcp, udp, icmp, or "-1": all
    traffic) from a CIDR ("cidr:...", IPv4 or IPv6), a prefix list ("pl:pl-...") or a
    role's group ("sg:alb"). Everything a group admits is observed as rules, so a hand-added
    `::/0` or all-traffic rule shows in plan and apply revokes it."""

    port: int
    source: str
    protocol: str = "tcp"
    to_port: int | None = None  # None: a single port (`port`)

    def __post_init__(self) -> None:  # one spelling per rule, so equal rules compare equal
        if self.protocol == ALL:
            object.__setattr__(self, "port", -1)
            object.__setattr__(self, "to_port", -1)
        elif self.to_port is None:
            object.__setattr__(self, "to_port", self.port)

    def __str__(self) -> str:
        source = self.source.split(":", 1)[1]
        if self.protocol == ALL:
            return f"all traffic from {source}"
        ports = f"{self.port}" if self.to_port == self.port else f"{self.port}-{self.to_port}"
        return f"{self.protocol}/{ports} from {source}"


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
    associations: dict[str, str] = field(default_factory=dict)  # subnet id -> association id


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


def in_vpc(vpc_id: str) -> list[Any]:
    return [{"Name": "vpc-id", "Values": [vpc_id]}]


def observe(ctx: Ctx) -> Observed:
    """What exists, recording ids in ctx.ids. Without our VPC nothing else can exist."""
    o = Observed()
    vpc = find_vpc(ctx)
    if vpc is None:
        return o
    o.vpc_id, o.vpc_cidr = vpc["VpcId"], vpc["CidrBlock"]
    ctx.ids["vpc"] = vpc["VpcId"]
    o.dns_hostnames = ctx.ec2.describe_vpc_attribute(
        VpcId=vpc["VpcId"], Attribute="enableDnsHostnames"
    )["EnableDnsHostnames"].get("Value", False)
    for igw in ctx.ec2.describe_internet_gateways(Filters=owner_filters(ctx))["InternetGateways"]:
        o.igw_id = igw["InternetGatewayId"]
        o.igw_attached = any(a["VpcId"] == vpc["VpcId"] for a in igw.get("Attachments", []))
        ctx.ids["igw"] = o.igw_id
    observe_subnets(ctx, o, vpc["VpcId"])
    observe_route_tables(ctx, o, vpc["VpcId"])
    observe_groups(ctx, o, vpc["VpcId"])
    return o


def observe_subnets(ctx: Ctx, o: Observed, vpc_id: str) -> None:
    prefix = name(ctx, "")
    for s in ctx.ec2.describe_subnets(Filters=in_vpc(vpc_id) + owner_filters(ctx))["Subnets"]:
        sname = tag_dict(s.get("Tags")).get("Name", "")[len(prefix) :]
        o.subnets[sname] = {
            "id": s["SubnetId"],
            "cidr": s["CidrBlock"],
            "az": s["AvailabilityZone"],
            "map_public_ip": s.get("MapPublicIpOnLaunch", False),
        }
        ctx.ids[f"subnet:{sname}"] = s["SubnetId"]


def observe_route_tables(ctx: Ctx, o: Observed, vpc_id: str) -> None:
    """Ours (by tags), and every subnet association in the VPC (a subnet moves by replacing
    its association, wherever it is)."""
    prefix = name(ctx, "")
    for rt in ctx.ec2.describe_route_tables(Filters=in_vpc(vpc_id))["RouteTables"]:
        associations = {
            a["SubnetId"]: a["RouteTableAssociationId"]
            for a in rt.get("Associations", [])
            if a.get("SubnetId")
        }
        o.associations.update(associations)
        tags = tag_dict(rt.get("Tags"))
        if not owned(tags, ctx.tags):
            continue
        kind = tags.get("Name", "")[len(prefix) :].removesuffix("-rt")
        o.route_tables[kind] = {
            "id": rt["RouteTableId"],
            "routes": {
                r.get("DestinationCidrBlock", ""): r.get("GatewayId", "")
                for r in rt.get("Routes", [])
            },
            "associations": associations,
        }
        ctx.ids[f"rt:{kind}"] = rt["RouteTableId"]


def observe_groups(ctx: Ctx, o: Observed, vpc_id: str) -> None:
    prefix = name(ctx, "")
    filters = in_vpc(vpc_id) + owner_filters(ctx)
    groups = ctx.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    for g in groups:
        role = g["GroupName"][len(prefix) :]
        o.groups[role] = g["GroupId"]
        ctx.ids[f"sg:{role}"] = g["GroupId"]
    by_id = {gid: role for role, gid in o.groups.items()}
    for g in groups:
        o.rules[by_id[g["GroupId"]]] = frozenset(
            rule for perm in g.get("IpPermissions", []) for rule in rules_of(perm, by_id)
        )


def rules_of(perm: Any, roles: dict[str, str]) -> list[Rule]:
    """An IpPermission as rules: every source kind, IPv6 and all-traffic included."""
    protocol = str(perm.get("IpProtocol", "tcp"))
    port = int(perm.get("FromPort", -1))
    to_port = int(perm.get("ToPort", port))
    sources = [
        *(f"cidr:{r['CidrIp']}" for r in perm.get("IpRanges", [])),
        *(f"cidr:{r['CidrIpv6']}" for r in perm.get("Ipv6Ranges", [])),
        *(f"pl:{r['PrefixListId']}" for r in perm.get("PrefixListIds", [])),
        *(
            f"sg:{roles.get(p.get('GroupId', ''), p.get('GroupId', ''))}"
            for p in perm.get("UserIdGroupPairs", [])
        ),
    ]
    return [Rule(port, source, protocol, to_port) for source in sources]


# ---- diff ----------------------------------------------------------------------------------


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    """The changes in dependency order; what an earlier one creates is a Ref here."""
    changes: list[Change] = []
    for part in (vpc_changes, subnet_changes, route_table_changes, group_changes):
        made = {key for change in changes for key in change.produces}
        changes.extend(part(want, have, Ids(ctx, made)))
    return changes


@dataclass(frozen=True)
class Ids:
    """Ids as this family's changes use them: a Ref for what an earlier change creates."""

    ctx: Ctx
    made: set[str]

    def __call__(self, key: str) -> str | Ref:
        return Ref(key) if key in self.made else self.ctx.ref(key)


def vpc_changes(want: Desired, have: Observed, ids: Ids) -> list[Change]:
    ctx = ids.ctx
    dns = {"VpcId": ids("vpc"), "EnableDnsHostnames": {"Value": True}}
    changes: list[Change] = []
    if have.vpc_id is None:
        create = {"CidrBlock": want.vpc_cidr, "TagSpecifications": tag_spec(ctx, "vpc", "vpc")}
        params = {"CreateVpc": create, "ModifyVpcAttribute": {**dns, "VpcId": Ref("vpc")}}
        changes.append(
            Change("create", "vpc", name(ctx, "vpc"), (f"cidr: {want.vpc_cidr}",), params, ("vpc",))
        )
    else:
        diffs = field_diffs(
            {"cidr": want.vpc_cidr, "dns_hostnames": True},
            {"cidr": have.vpc_cidr, "dns_hostnames": have.dns_hostnames},
        )
        update: dict[str, Any] = {} if have.dns_hostnames else {"ModifyVpcAttribute": dns}
        if have.vpc_cidr != want.vpc_cidr:
            update[REFUSED] = (
                f"the VPC's CIDR is {have.vpc_cidr}, the spec says {want.vpc_cidr}: a VPC block "
                "cannot change in place; destroy the environment first or restore the spec"
            )
        if diffs:
            changes.append(Change("update", "vpc", name(ctx, "vpc"), diffs, update))
    attach = {"InternetGatewayId": ids("igw"), "VpcId": ids("vpc")}
    shown = ("attached: to the vpc",)
    if have.igw_id is None:
        tags = tag_spec(ctx, "internet-gateway", "igw")
        params = {
            "CreateInternetGateway": {"TagSpecifications": tags},
            "AttachInternetGateway": {**attach, "InternetGatewayId": Ref("igw")},
        }
        changes.append(
            Change("create", "internet_gateway", name(ctx, "igw"), shown, params, ("igw",))
        )
    elif not have.igw_attached:
        params = {"AttachInternetGateway": attach}
        changes.append(Change("update", "internet_gateway", name(ctx, "igw"), shown, params))
    return changes


def subnet_changes(want: Desired, have: Observed, ids: Ids) -> list[Change]:
    """Deletes first (a replaced subnet's block must be free before it is created again)."""
    ctx = ids.ctx
    deletes: list[Change] = []
    others: list[Change] = []
    for sname, s in want.subnets.items():
        o = have.subnets.get(sname)
        want_fields = {"cidr": s.cidr, "az": s.az, "map_public_ip": s.public}
        if o is None:
            others.append(new_subnet(ids, s, (f"cidr: {s.cidr} ({s.az})",)))
        elif o["cidr"] != s.cidr or o["az"] != s.az:  # no API moves a subnet: replace it
            deletes.append(subnet_removal(ctx, sname, o["id"]))
            others.append(new_subnet(ids, s, field_diffs(want_fields, o)))
        elif o["map_public_ip"] != s.public:
            public = {"SubnetId": o["id"], "MapPublicIpOnLaunch": {"Value": s.public}}
            diffs = field_diffs(want_fields, o)
            others.append(
                Change(
                    "update", "subnet", name(ctx, sname), diffs, {"ModifySubnetAttribute": public}
                )
            )
    for sname in sorted(have.subnets.keys() - want.subnets.keys()):
        deletes.append(subnet_removal(ctx, sname, have.subnets[sname]["id"]))
    return deletes + others


def new_subnet(ids: Ids, s: SubnetSpec, diffs: tuple[str, ...]) -> Change:
    key = f"subnet:{s.name}"
    params: dict[str, Any] = {
        "CreateSubnet": {
            "VpcId": ids("vpc"),
            "CidrBlock": s.cidr,
            "AvailabilityZone": s.az,
            "TagSpecifications": tag_spec(ids.ctx, "subnet", s.name),
        }
    }
    if s.public:  # a new subnet does not map public IPs
        params["ModifySubnetAttribute"] = {
            "SubnetId": Ref(key),
            "MapPublicIpOnLaunch": {"Value": True},
        }
    return Change("create", "subnet", name(ids.ctx, s.name), diffs, params, (key,))


def subnet_removal(ctx: Ctx, sname: str, subnet_id: str) -> Change:
    return Change(
        "delete", "subnet", name(ctx, sname), (), {"DeleteSubnet": {"SubnetId": subnet_id}}
    )


def route_table_changes(want: Desired, have: Observed, ids: Ids) -> list[Change]:
    ctx = ids.ctx
    changes: list[Change] = []
    for kind in ("public", "private"):
        members = sorted(n for n, s in want.subnets.items() if s.public == (kind == "public"))
        o = have.route_tables.get(kind)
        rt_name = name(ctx, f"{kind}-rt")
        if o is None:
            shown: list[str] = [f"subnets: {', '.join(members)}"]
            params = {
                "CreateRouteTable": {
                    "VpcId": ids("vpc"),
                    "TagSpecifications": tag_spec(ctx, "route-table", f"{kind}-rt"),
                }
            }
            if kind == "public":
                shown.insert(0, f"route: {ANYWHERE} -> internet gateway")
                params["CreateRoute"] = internet_route(ids, Ref("rt:public"))
            params.update(associations(have, ids, members, Ref(f"rt:{kind}"), {}))
            key = f"rt:{kind}"
            changes.append(Change("create", "route_table", rt_name, tuple(shown), params, (key,)))
            continue
        diffs: list[str] = []
        update: dict[str, Any] = {}
        route = o["routes"].get(ANYWHERE)
        if kind == "public" and not (route or "").startswith("igw-"):
            diffs.append(f"route {ANYWHERE}: {route or '(none)'} -> internet gateway")
            op = "CreateRoute" if route is None else "ReplaceRoute"
            update[op] = internet_route(ids, o["id"])
        update.update(associations(have, ids, members, o["id"], o["associations"]))
        associated = sorted(
            n
            for n, sub in have.subnets.items()
            if sub["id"] in o["associations"] and f"subnet:{n}" not in ids.made
        )
        if associated != members:
            diffs.append(f"subnets: {', '.join(associated) or '(none)'} -> {', '.join(members)}")
        if diffs:
            changes.append(Change("update", "route_table", rt_name, tuple(diffs), update))
    return changes


def internet_route(ids: Ids, route_table: str | Ref) -> dict[str, Any]:
    return {"RouteTableId": route_table, "DestinationCidrBlock": ANYWHERE, "GatewayId": ids("igw")}


def associations(
    have: Observed, ids: Ids, members: list[str], route_table: str | Ref, current: dict[str, str]
) -> dict[str, Any]:
    """Calls that put `members` in the table: a subnet associated elsewhere is moved."""
    associate: list[Any] = []
    move: list[Any] = []
    for sname in members:
        sid = ids(f"subnet:{sname}")
        if isinstance(sid, str) and sid in current:
            continue
        if isinstance(sid, str) and sid in have.associations:
            move.append({"AssociationId": have.associations[sid], "RouteTableId": route_table})
        else:
            associate.append({"SubnetId": sid, "RouteTableId": route_table})
    calls: dict[str, Any] = {}
    if associate:
        calls["AssociateRouteTable"] = associate
    if move:
        calls["ReplaceRouteTableAssociation"] = move
    return calls


def group_changes(want: Desired, have: Observed, ids: Ids) -> list[Change]:
    """The groups in chain order: a rule refers only to a group created before it."""
    ctx = ids.ctx
    changes: list[Change] = []
    for role in SG_ROLES:
        wanted = want.rules[role]
        sg_name = name(ctx, role)
        key = f"sg:{role}"
        if role not in have.groups:
            created = tuple(f"ingress: {r}" for r in sorted(wanted))
            params: dict[str, Any] = {
                "CreateSecurityGroup": {
                    "GroupName": sg_name,
                    "Description": f"{ctx.env.stack_name} {ctx.env.name} {role}",
                    "VpcId": ids("vpc"),
                    "TagSpecifications": tag_spec(ctx, "security-group", role),
                }
            }
            if wanted:
                params["AuthorizeSecurityGroupIngress"] = ingress(ids, Ref(key), wanted)
            changes.append(Change("create", "security_group", sg_name, created, params, (key,)))
            ids.made.add(key)
            continue
        got = have.rules.get(role, frozenset())
        add, remove = wanted - got, got - wanted
        update: dict[str, Any] = {}
        if add:
            update["AuthorizeSecurityGroupIngress"] = ingress(ids, have.groups[role], add)
        if remove:
            update["RevokeSecurityGroupIngress"] = ingress(ids, have.groups[role], remove)
        rule_diffs = tuple(f"+ ingress {r}" for r in sorted(add)) + tuple(
            f"- ingress {r}" for r in sorted(remove)
        )
        if rule_diffs:
            changes.append(Change("update", "security_group", sg_name, rule_diffs, update))
    return changes


def ingress(ids: Ids, group: str | Ref, rules: frozenset[Rule]) -> dict[str, Any]:
    return {"GroupId": group, "IpPermissions": [permission(ids, r) for r in sorted(rules)]}


def permission(ids: Ids, rule: Rule) -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": rule.protocol}
    if rule.protocol != ALL:
        perm.update(FromPort=rule.port, ToPort=rule.to_port)
    kind, source = rule.source.split(":", 1)
    if kind == "cidr" and ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    elif kind == "cidr":
        perm["IpRanges"] = [{"CidrIp": source}]
    elif kind == "pl":
        perm["PrefixListIds"] = [{"PrefixListId": source}]
    elif source in SG_ROLES:
        perm["UserIdGroupPairs"] = [{"GroupId": ids(f"sg:{source}")}]
    else:  # a group that is not ours (observed by id)
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    return perm


def plan(ctx: Ctx) -> list[Change]:
    return diff(desired(ctx), observe(ctx), ctx)


# ---- apply: one handler per (resource, action) --------------------------------------------


def create_vpc(ctx: Ctx, change: Change) -> None:
    vpc_id = ctx.ec2.create_vpc(**ctx.resolve(change.params["CreateVpc"]))["Vpc"]["VpcId"]
    ctx.ids["vpc"] = vpc_id
    ctx.report.line(f"  + vpc {change.name} ({vpc_id})")
    update_vpc(ctx, change)


def update_vpc(ctx: Ctx, change: Change) -> None:
    if REFUSED in change.params:
        raise AwsError(change.params[REFUSED])
    if "ModifyVpcAttribute" in change.params:
        ctx.ec2.modify_vpc_attribute(**ctx.resolve(change.params["ModifyVpcAttribute"]))
        ctx.report.line(f"  ~ vpc {change.name}: dns_hostnames -> true")


def create_gateway(ctx: Ctx, change: Change) -> None:
    created = ctx.ec2.create_internet_gateway(**ctx.resolve(change.params["CreateInternetGateway"]))
    igw_id = created["InternetGateway"]["InternetGatewayId"]
    ctx.ids["igw"] = igw_id
    ctx.report.line(f"  + internet_gateway {change.name} ({igw_id})")
    attach_gateway(ctx, change)


def attach_gateway(ctx: Ctx, change: Change) -> None:
    ctx.ec2.attach_internet_gateway(**ctx.resolve(change.params["AttachInternetGateway"]))


def create_subnet(ctx: Ctx, change: Change) -> None:
    subnet_id = ctx.ec2.create_subnet(**ctx.resolve(change.params["CreateSubnet"]))["Subnet"][
        "SubnetId"
    ]
    ctx.ids[change.produces[0]] = subnet_id
    ctx.report.line(f"  + subnet {change.name} ({subnet_id})")
    update_subnet(ctx, change)


def update_subnet(ctx: Ctx, change: Change) -> None:
    if "ModifySubnetAttribute" in change.params:
        ctx.ec2.modify_subnet_attribute(**ctx.resolve(change.params["ModifySubnetAttribute"]))


def delete_subnet(ctx: Ctx, change: Change) -> None:
    ctx.ec2.delete_subnet(**ctx.resolve(change.params["DeleteSubnet"]))
    ctx.report.line(f"  - subnet {change.name}")


def create_route_table(ctx: Ctx, change: Change) -> None:
    created = ctx.ec2.create_route_table(**ctx.resolve(change.params["CreateRouteTable"]))
    rt_id = created["RouteTable"]["RouteTableId"]
    ctx.ids[change.produces[0]] = rt_id
    ctx.report.line(f"  + route_table {change.name} ({rt_id})")
    update_route_table(ctx, change)


def update_route_table(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "CreateRoute" in p:
        ctx.ec2.create_route(**ctx.resolve(p["CreateRoute"]))
    if "ReplaceRoute" in p:
        ctx.ec2.replace_route(**ctx.resolve(p["ReplaceRoute"]))
    for args in p.get("ReplaceRouteTableAssociation", []):
        ctx.ec2.replace_route_table_association(**ctx.resolve(args))
    for args in p.get("AssociateRouteTable", []):
        ctx.ec2.associate_route_table(**ctx.resolve(args))


def create_group(ctx: Ctx, change: Change) -> None:
    gid = ctx.ec2.create_security_group(**ctx.resolve(change.params["CreateSecurityGroup"]))[
        "GroupId"
    ]
    ctx.ids[change.produces[0]] = gid
    ctx.report.line(f"  + security_group {change.name} ({gid})")
    update_group(ctx, change)


def update_group(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "AuthorizeSecurityGroupIngress" in p:
        ctx.ec2.authorize_security_group_ingress(**ctx.resolve(p["AuthorizeSecurityGroupIngress"]))
    if "RevokeSecurityGroupIngress" in p:
        ctx.ec2.revoke_security_group_ingress(**ctx.resolve(p["RevokeSecurityGroupIngress"]))
    for shown in change.diffs:  # the rules as plan printed them ("ingress: R" = a new group's)
        added = shown.removeprefix("ingress: ")
        ctx.report.line(
            f"  ~ security_group {change.name}: {shown if added == shown else '+ ingress ' + added}"
        )


HANDLERS: Handlers = {
    ("vpc", "create"): create_vpc,
    ("vpc", "update"): update_vpc,
    ("internet_gateway", "create"): create_gateway,
    ("internet_gateway", "update"): attach_gateway,
    ("subnet", "create"): create_subnet,
    ("subnet", "update"): update_subnet,
    ("subnet", "delete"): delete_subnet,
    ("route_table", "create"): create_route_table,
    ("route_table", "update"): update_route_table,
    ("security_group", "create"): create_group,
    ("security_group", "update"): update_group,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- destroy / status ----------------------------------------------------------------------


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """Everything in the owned VPC that carries our tags, then the VPC: the groups' rules
    first (alb -> ec2 -> rds refer to each other), the groups, the route tables (their
    associations first), the subnets, the internet gateway (detached first). No
    network resource is ever adopted, so `teardown` changes nothing here."""
    ec2 = ctx.ec2
    changes: list[Change] = []
    params: dict[str, Any]
    vpcs = ec2.describe_vpcs(Filters=owner_filters(ctx))["Vpcs"]
    for vpc in vpcs:
        ours = in_vpc(vpc["VpcId"]) + owner_filters(ctx)
        groups = ec2.describe_security_groups(Filters=ours)["SecurityGroups"]
        for g in groups:
            if g.get("IpPermissions"):
                revoke = {"GroupId": g["GroupId"], "IpPermissions": g["IpPermissions"]}
                shown = ("- ingress: every rule (the groups refer to each other)",)
                update = {"RevokeSecurityGroupIngress": revoke}
                changes.append(Change("update", "security_group", g["GroupName"], shown, update))
        for g in groups:
            delete = {"DeleteSecurityGroup": {"GroupId": g["GroupId"]}}
            changes.append(Change("delete", "security_group", g["GroupName"], (), delete))
        for rt in ec2.describe_route_tables(Filters=ours)["RouteTables"]:
            params = {
                "DisassociateRouteTable": [
                    {"AssociationId": a["RouteTableAssociationId"]}
                    for a in rt.get("Associations", [])
                    if not a.get("Main") and a.get("RouteTableAssociationId")
                ],
                "DeleteRouteTable": {"RouteTableId": rt["RouteTableId"]},
            }
            label = tag_dict(rt.get("Tags")).get("Name", rt["RouteTableId"])
            changes.append(Change("delete", "route_table", label, (), params))
        for sub in ec2.describe_subnets(Filters=ours)["Subnets"]:
            label = tag_dict(sub.get("Tags")).get("Name", sub["SubnetId"])
            delete = {"DeleteSubnet": {"SubnetId": sub["SubnetId"]}}
            changes.append(Change("delete", "subnet", label, (), delete))
    for igw in ec2.describe_internet_gateways(Filters=owner_filters(ctx))["InternetGateways"]:
        igw_id = igw["InternetGatewayId"]
        params = {
            "DetachInternetGateway": [
                {"InternetGatewayId": igw_id, "VpcId": a["VpcId"]}
                for a in igw.get("Attachments", [])
            ],
            "DeleteInternetGateway": {"InternetGatewayId": igw_id},
        }
        changes.append(Change("delete", "internet_gateway", igw_id, (), params))
    for vpc in vpcs:
        label = tag_dict(vpc.get("Tags")).get("Name", vpc["VpcId"])
        delete = {"DeleteVpc": {"VpcId": vpc["VpcId"]}}
        changes.append(Change("delete", "vpc", label, (), delete))
    return changes


def revoke_rules(ctx: Ctx, change: Change) -> None:
    ctx.ec2.revoke_security_group_ingress(
        **ctx.resolve(change.params["RevokeSecurityGroupIngress"])
    )


def remove_group(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["DeleteSecurityGroup"])
    settle(ctx, f"security_group {change.name}", partial(ctx.ec2.delete_security_group, **args))
    ctx.report.line(f"  - security_group {change.name}")


def remove_route_table(ctx: Ctx, change: Change) -> None:
    p = change.params
    for args in p["DisassociateRouteTable"]:
        ctx.ec2.disassociate_route_table(**ctx.resolve(args))
    ctx.ec2.delete_route_table(**ctx.resolve(p["DeleteRouteTable"]))
    ctx.report.line(f"  - route_table {change.name}")


def remove_subnet(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["DeleteSubnet"])
    settle(ctx, f"subnet {change.name}", partial(ctx.ec2.delete_subnet, **args))
    ctx.report.line(f"  - subnet {change.name}")


def remove_gateway(ctx: Ctx, change: Change) -> None:
    p = change.params
    for args in p["DetachInternetGateway"]:
        detach = partial(ctx.ec2.detach_internet_gateway, **ctx.resolve(args))
        settle(ctx, f"internet_gateway {change.name} to detach", detach)
    ctx.ec2.delete_internet_gateway(**ctx.resolve(p["DeleteInternetGateway"]))
    ctx.report.line(f"  - internet_gateway {change.name}")


def remove_vpc(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["DeleteVpc"])
    try:
        settle(ctx, f"vpc {change.name}", partial(ctx.ec2.delete_vpc, **args))
    except AwsError:
        raise AwsError(
            f"the VPC {args['VpcId']} still holds resources this stack does not own "
            "(DependencyViolation); remove them and re-run destroy"
        ) from None
    ctx.report.line(f"  - vpc {change.name}")


DESTROY_HANDLERS: Handlers = {
    ("security_group", "update"): revoke_rules,
    ("security_group", "delete"): remove_group,
    ("route_table", "delete"): remove_route_table,
    ("subnet", "delete"): remove_subnet,
    ("internet_gateway", "delete"): remove_gateway,
    ("vpc", "delete"): remove_vpc,
}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def status(ctx: Ctx) -> list[str]:
    o = observe(ctx)
    if o.vpc_id is None:
        return ["network: no VPC"]
    return [
        f"network: vpc {o.vpc_id} {o.vpc_cidr}, {len(o.subnets)} subnets, "
        f"security groups: {', '.join(f'{r}={g}' for r, g in o.groups.items())}"
    ]
