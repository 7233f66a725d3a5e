"""RDS PostgreSQL: a DB subnet group (private subnets), a parameter group, the instance.

The parameter group's family is derived from the engine version (postgres17 for
17.x) and its name carries the family, so a major upgrade gets a fresh group. Static
parameters are set with ApplyMethod=pending-reboot, dynamic ones immediate. The
instance is private, encrypted, in the rds security group; a protected environment
keeps backups and deletion protection (the spec's validation insists).

The master password is a SecureString (DB_PASSWORD under the env's SSM prefix, what
the app reads): taken from SSM when present, else (the plan says so) generated and
stored there BEFORE the instance is created, so a failure in between leaves nothing
unknown. It is never in a plan (`Secret`) and never printed. Once the instance is
available its endpoint is recorded (ctx.ids["db_endpoint"]): the params family writes
it to DB_HOST (a Ref while the instance is only planned).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws import secrets
from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import (
    ADOPTION_SHOWN,
    Ctx,
    adopted,
    adoption_tags,
    owned,
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
from jobtory_stack.aws.plan import REFUSED, Change, Secret, field_diffs, fmt
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import RDS_MULTI_AZ_WAIT_TIMEOUT
from jobtory_stack.spec.rds_parameters import CATALOG

PASSWORD_PARAMETER = "DB_PASSWORD"
PASSWORD_KEY = f"ssm:{PASSWORD_PARAMETER}"  # produced by the instance's create (params skips it)
# the instance fields as ModifyDBInstance names them
MODIFIABLE = {
    "instance_class": "DBInstanceClass",
    "engine_version": "EngineVersion",
    "allocated_storage": "AllocatedStorage",
    "backup_retention": "BackupRetentionPeriod",
    "deletion_protection": "DeletionProtection",
    "multi_az": "MultiAZ",
    "publicly_accessible": "PubliclyAccessible",
    "parameter_group": "DBParameterGroupName",
    "security_groups": "VpcSecurityGroupIds",
}


@dataclass(frozen=True)
class Desired:
    subnet_group: str
    subnets: tuple[str, ...]  # subnet names (private)
    parameter_group: str
    family: str
    parameters: dict[str, tuple[str, str]]  # name -> (value, apply method)
    instance: str
    fields: dict[str, Any]  # comparable instance settings


@dataclass
class Observed:
    subnet_group: list[str] | None = None  # subnet names, None = missing
    parameter_group: bool = False
    parameters: dict[str, str] | None = None
    instance: dict[str, Any] | None = None
    immutable: dict[str, Any] | None = None
    password_stored: bool = True  # DB_PASSWORD in SSM (looked up only to create the instance)


def parameter_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def effective_version(wanted: str, running: str) -> str:
    """The running version as the spec sees it: `17` matches any 17.x, and a minor version
    RDS upgraded on its own (auto minor upgrade) satisfies an older one; no downgrades."""
    want_parts, run_parts = wanted.split("."), running.split(".")
    if want_parts[0] != run_parts[0]:
        return running
    if len(want_parts) == 1:
        return wanted
    try:
        newer = [int(p) for p in run_parts[:2]] >= [int(p) for p in want_parts[:2]]
    except ValueError:
        return running
    return wanted if newer else running


def desired(ctx: Ctx) -> Desired:
    rds = ctx.env.rds
    d = ctx.d
    private = tuple(s.name for s in ctx.env.network.subnets if not s.public)
    pg_name = d.resource_name(f"{rds.family}")
    return Desired(
        subnet_group=d.resource_name("db-subnets"),
        subnets=private,
        parameter_group=pg_name,
        family=rds.family,
        parameters={
            name: (parameter_value(value), CATALOG[name].apply_method)
            for name, value in sorted(rds.parameters.items())
        },
        instance=d.resource_name("db"),
        fields={
            "instance_class": rds.instance_class,
            "engine_version": rds.engine_version,
            "allocated_storage": rds.allocated_storage_gb,
            "backup_retention": rds.backup_retention_days,
            "deletion_protection": rds.deletion_protection,
            "multi_az": rds.multi_az,
            "publicly_accessible": rds.publicly_accessible,
            "parameter_group": pg_name,
            "security_groups": ["rds"],
        },
    )


# ---- observed ------------------------------------------------------------------------------


def password_stored(ctx: Ctx) -> bool:
    try:
        ctx.ssm.get_parameter(Name=ctx.d.parameter_name(PASSWORD_PARAMETER))
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        return False
    return True


def not_found(exc: ClientError) -> bool:
    return error_code(exc) in {
        "DBSubnetGroupNotFoundFault",
        "DBParameterGroupNotFound",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
    }


def observe(ctx: Ctx, want: Desired) -> Observed:
    rds = ctx.rds
    o = Observed()
    subnet_names = {v: k.split(":", 1)[1] for k, v in ctx.ids.items() if k.startswith("subnet:")}
    try:
        group = rds.describe_db_subnet_groups(DBSubnetGroupName=want.subnet_group)[
            "DBSubnetGroups"
        ][0]
        o.subnet_group = sorted(
            subnet_names.get(s["SubnetIdentifier"], s["SubnetIdentifier"])
            for s in group.get("Subnets", [])
        )
    except ClientError as exc:
        if not not_found(exc):
            raise
    try:
        groups = rds.describe_db_parameter_groups(DBParameterGroupName=want.parameter_group)
        o.parameter_group = bool(groups["DBParameterGroups"])
        o.parameters = {}
        pages = rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=want.parameter_group, Source="user"
        )
        for page in pages:
            for p in page.get("Parameters", []):
                if "ParameterValue" in p:
                    o.parameters[p["ParameterName"]] = p["ParameterValue"]
    except ClientError as exc:
        if not not_found(exc):
            raise
    if not o.parameter_group:
        o.parameters = None
    try:
        db = rds.describe_db_instances(DBInstanceIdentifier=want.instance)["DBInstances"][0]
    except ClientError as exc:
        if not not_found(exc):
            raise
        o.password_stored = password_stored(ctx)
        return o
    sg_names = {v: k.split(":", 1)[1] for k, v in ctx.ids.items() if k.startswith("sg:")}
    o.instance = {
        "instance_class": db["DBInstanceClass"],
        "engine_version": effective_version(ctx.env.rds.engine_version, db["EngineVersion"]),
        "allocated_storage": db["AllocatedStorage"],
        "backup_retention": db["BackupRetentionPeriod"],
        "deletion_protection": db.get("DeletionProtection", False),
        "multi_az": db.get("MultiAZ", False),
        "publicly_accessible": db.get("PubliclyAccessible", False),
        "parameter_group": next(
            (g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])), None
        ),
        "security_groups": sorted(
            sg_names.get(g["VpcSecurityGroupId"], g["VpcSecurityGroupId"])
            for g in db.get("VpcSecurityGroups", [])
        ),
        "status": db.get("DBInstanceStatus"),
        "owned": owned(tag_dict(db.get("TagList")), ctx.tags),
        "arn": db.get("DBInstanceArn"),
    }
    o.immutable = {
        "storage_encrypted": db.get("StorageEncrypted", False),
        "subnet_group": db.get("DBSubnetGroup", {}).get("DBSubnetGroupName"),
    }
    address = db.get("Endpoint", {}).get("Address")
    if address:
        ctx.ids["db_endpoint"] = address
    return o


# ---- diff ----------------------------------------------------------------------------------


def diff(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    return [
        *subnet_group_changes(want, have, ctx),
        *parameter_group_changes(want, have, ctx),
        *instance_changes(want, have, ctx),
    ]


def subnet_group_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    subnet_ids = [ctx.ref(f"subnet:{n}") for n in want.subnets]
    if have.subnet_group is None:
        create = {
            "DBSubnetGroupName": want.subnet_group,
            "DBSubnetGroupDescription": f"{ctx.env.stack_name} {ctx.env.name} private subnets",
            "SubnetIds": subnet_ids,
            "Tags": tag_list(ctx.tags),
        }
        shown = (f"subnets: {', '.join(want.subnets)}",)
        params: dict[str, Any] = {"CreateDBSubnetGroup": create}
        return [Change("create", "db_subnet_group", want.subnet_group, shown, params)]
    if have.subnet_group != sorted(want.subnets):
        diffs = field_diffs({"subnets": sorted(want.subnets)}, {"subnets": have.subnet_group})
        modify = {"DBSubnetGroupName": want.subnet_group, "SubnetIds": subnet_ids}
        params = {"ModifyDBSubnetGroup": modify}
        return [Change("update", "db_subnet_group", want.subnet_group, diffs, params)]
    return []


def parameter_group_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    wanted = {k: v for k, (v, _) in want.parameters.items()}
    got = have.parameters or {}
    to_set = [
        {"ParameterName": k, "ParameterValue": v, "ApplyMethod": m}
        for k, (v, m) in want.parameters.items()
        if got.get(k) != v
    ]
    params: dict[str, Any] = {}
    if to_set:
        params["ModifyDBParameterGroup"] = {
            "DBParameterGroupName": want.parameter_group,
            "Parameters": to_set,
        }
    if not have.parameter_group:
        create = {
            "DBParameterGroupName": want.parameter_group,
            "DBParameterGroupFamily": want.family,
            "Description": f"{ctx.env.stack_name} {ctx.env.name} PostgreSQL parameters",
            "Tags": tag_list(ctx.tags),
        }
        params = {"CreateDBParameterGroup": create, **params}
        shown = (
            f"family: {want.family}",
            *(f"{k} = {v} ({m})" for k, (v, m) in want.parameters.items()),
        )
        return [Change("create", "db_parameter_group", want.parameter_group, shown, params)]
    stale = sorted(got.keys() - wanted.keys())
    if stale:
        params["ResetDBParameterGroup"] = {
            "DBParameterGroupName": want.parameter_group,
            "Parameters": [{"ParameterName": k, "ApplyMethod": "pending-reboot"} for k in stale],
        }
    diffs = field_diffs(wanted, got) + tuple(f"{k}: {got[k]} -> (default)" for k in stale)
    reboot = [p["ParameterName"] for p in to_set if p["ApplyMethod"] == "pending-reboot"]
    notes: tuple[str, ...] = ()
    if reboot and have.instance is not None:  # a new instance starts with them
        notes = (
            f"! {', '.join(reboot)} apply at the next reboot (pending-reboot): "
            f"aws rds reboot-db-instance --db-instance-identifier {want.instance}",
        )
    if not diffs:
        return []
    return [
        Change("update", "db_parameter_group", want.parameter_group, diffs, params, notes=notes)
    ]


def instance_changes(want: Desired, have: Observed, ctx: Ctx) -> list[Change]:
    wait = {"DescribeDBInstances": {"DBInstanceIdentifier": want.instance}}
    if have.instance is None:
        shown = (
            *(f"{k}: {fmt(v)}" for k, v in want.fields.items()),
            f"storage_encrypted: {ctx.env.rds.storage_encrypted}",
            "master password: SecureString in SSM (never shown)",
        )
        params: dict[str, Any] = {"CreateDBInstance": create_instance_params(want, ctx), **wait}
        produces: tuple[str, ...] = ("db_endpoint",)
        if not have.password_stored:  # stored before the instance is created
            params["PutParameter"] = {
                "Name": ctx.d.parameter_name(PASSWORD_PARAMETER),
                "Value": Secret(PASSWORD_PARAMETER),
                "Type": "SecureString",
                "Tags": tag_list(ctx.tags),
            }
            produces += (PASSWORD_KEY,)
        return [Change("create", "db_instance", want.instance, shown, params, produces)]
    diffs = field_diffs(want.fields, have.instance)
    changed = {k: v for k, v in want.fields.items() if have.instance.get(k) != v}
    update: dict[str, Any] = {}
    if changed:
        modify: dict[str, Any] = {MODIFIABLE[k]: v for k, v in changed.items()}
        if "security_groups" in changed:
            modify["VpcSecurityGroupIds"] = [ctx.ref("sg:rds")]
        if "EngineVersion" in modify:
            modify["AllowMajorVersionUpgrade"] = True
        update["ModifyDBInstance"] = {
            "DBInstanceIdentifier": want.instance,
            "ApplyImmediately": True,
            **modify,
        }
    if have.instance["status"] == "creating":  # a wait cut short: apply waits again
        diffs += ("status: creating -> available (wait)",)
    if not have.instance["owned"]:  # an existing database with our name: taken over, said so
        diffs += (ADOPTION_SHOWN,)
        update["AddTagsToResource"] = {
            "ResourceName": have.instance["arn"],
            "Tags": adoption_tags(ctx.tags),
        }
    notes: tuple[str, ...] = ()
    if have.immutable and have.immutable["storage_encrypted"] != ctx.env.rds.storage_encrypted:
        diffs += (
            f"storage_encrypted: {have.immutable['storage_encrypted']} -> "
            f"{ctx.env.rds.storage_encrypted} (needs a new instance: not done in place)",
        )
        notes = (
            f"! db_instance {want.instance}: storage encryption cannot change in place; "
            "restore a snapshot into an encrypted instance (not automated)",
        )
    if not diffs:
        return []
    params = {**update, **wait}
    produces = () if "db_endpoint" in ctx.ids else ("db_endpoint",)  # DB_HOST waits for it
    modify_change = Change("update", "db_instance", want.instance, diffs, params, produces, notes)
    if "engine_version" in changed:
        return [upgrade_snapshot(want, have, ctx), modify_change]
    return [modify_change]


def upgrade_snapshot(want: Desired, have: Observed, ctx: Ctx) -> Change:
    """A manual snapshot before an engine upgrade, its own change planned before the modify:
    an upgrade cannot be undone in place (no downgrades), a snapshot can be restored."""
    assert have.instance is not None
    before, after = have.instance["engine_version"], want.fields["engine_version"]
    name = f"{want.instance}-pre-upgrade-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    params = {
        "CreateDBSnapshot": {
            "DBInstanceIdentifier": want.instance,
            "DBSnapshotIdentifier": name,
            "Tags": tag_list(ctx.tags),
        },
        "DescribeDBSnapshots": {"DBSnapshotIdentifier": name},
    }
    shown = (f"of db_instance {want.instance} before its engine upgrade {before} -> {after}",)
    return Change("create", "db_snapshot", name, shown, params)


def create_instance_params(want: Desired, ctx: Ctx) -> dict[str, Any]:
    f, rds = want.fields, ctx.env.rds
    return {
        "DBInstanceIdentifier": want.instance,
        "Engine": rds.engine,
        "EngineVersion": f["engine_version"],
        "DBInstanceClass": f["instance_class"],
        "AllocatedStorage": f["allocated_storage"],
        "StorageType": "gp3",
        "StorageEncrypted": rds.storage_encrypted,
        "BackupRetentionPeriod": f["backup_retention"],
        "DeletionProtection": f["deletion_protection"],
        "MultiAZ": f["multi_az"],
        "PubliclyAccessible": f["publicly_accessible"],
        "DBSubnetGroupName": want.subnet_group,
        "DBParameterGroupName": want.parameter_group,
        "VpcSecurityGroupIds": [ctx.ref("sg:rds")],
        "DBName": rds.database,
        "MasterUsername": rds.master_username,
        "MasterUserPassword": Secret(PASSWORD_PARAMETER),
        "CopyTagsToSnapshot": True,
        "Tags": tag_list(ctx.tags),
    }


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want), ctx)


# ---- apply: one handler per (resource, action) --------------------------------------------


def create_subnet_group(ctx: Ctx, change: Change) -> None:
    ctx.rds.create_db_subnet_group(**ctx.resolve(change.params["CreateDBSubnetGroup"]))
    ctx.report.line(f"  + db_subnet_group {change.name}")


def update_subnet_group(ctx: Ctx, change: Change) -> None:
    ctx.rds.modify_db_subnet_group(**ctx.resolve(change.params["ModifyDBSubnetGroup"]))
    ctx.report.line(f"  ~ db_subnet_group {change.name}")


def create_parameter_group(ctx: Ctx, change: Change) -> None:
    args = ctx.resolve(change.params["CreateDBParameterGroup"])
    ctx.rds.create_db_parameter_group(**args)
    ctx.report.line(f"  + db_parameter_group {change.name} ({args['DBParameterGroupFamily']})")
    update_parameter_group(ctx, change)


def update_parameter_group(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "ModifyDBParameterGroup" in p:
        args = ctx.resolve(p["ModifyDBParameterGroup"])
        every = args.pop("Parameters")
        for start in range(0, len(every), 20):  # the API takes at most 20 per call
            ctx.rds.modify_db_parameter_group(**args, Parameters=every[start : start + 20])
        for parameter in every:
            shown = f"{parameter['ParameterName']} ({parameter['ApplyMethod']})"
            ctx.report.line(f"  ~ db_parameter_group {change.name}: {shown}")
    if "ResetDBParameterGroup" in p:
        args = ctx.resolve(p["ResetDBParameterGroup"])
        ctx.rds.reset_db_parameter_group(**args)
        stale = ", ".join(q["ParameterName"] for q in args["Parameters"])
        ctx.report.line(f"  ~ db_parameter_group {change.name}: reset {stale}")


def create_instance(ctx: Ctx, change: Change) -> None:
    p = change.params
    secrets.fetch(ctx, PASSWORD_PARAMETER, generate="PutParameter" in p)
    if "PutParameter" in p:
        args = ctx.resolve(p["PutParameter"])
        ctx.ssm.put_parameter(**args)
        ctx.ids[PASSWORD_KEY] = args["Name"]
        ctx.report.line(f"  + ssm_parameter {args['Name']} (SecureString, generated; never shown)")
    ctx.rds.create_db_instance(**ctx.resolve(p["CreateDBInstance"]))
    ctx.report.line(f"  + db_instance {change.name} (creating; this takes minutes on AWS)")
    wait_available(ctx, change)


def update_instance(ctx: Ctx, change: Change) -> None:
    if "AddTagsToResource" in change.params:
        ctx.rds.add_tags_to_resource(**ctx.resolve(change.params["AddTagsToResource"]))
    if "ModifyDBInstance" in change.params:
        args = ctx.resolve(change.params["ModifyDBInstance"])
        ctx.rds.modify_db_instance(**args)
        fields = sorted(k for k, api in MODIFIABLE.items() if api in args)
        ctx.report.line(f"  ~ db_instance {change.name}: {', '.join(fields)}")
    wait_available(ctx, change)


def create_snapshot(ctx: Ctx, change: Change) -> None:
    """The snapshot, waited for: the upgrade that follows starts only once it is taken."""
    ctx.rds.create_db_snapshot(**ctx.resolve(change.params["CreateDBSnapshot"]))
    describe = ctx.resolve(change.params["DescribeDBSnapshots"])

    def check() -> str | None:
        snap = ctx.rds.describe_db_snapshots(**describe)["DBSnapshots"][0]
        status = str(snap.get("Status", "unknown"))
        return None if status == "available" else status

    ctx.wait_for(f"db_snapshot {change.name}", check)
    ctx.report.line(f"  + db_snapshot {change.name} (before the engine upgrade)")


def wait_timeout(ctx: Ctx) -> float:
    """How long an instance may take to become available: a Multi-AZ create or change
    (a standby in a second AZ) often outlasts the usual bound (RDS_MULTI_AZ_WAIT_TIMEOUT);
    JOBTORY_RDS_WAIT_TIMEOUT overrides both."""
    configured = os.environ.get("JOBTORY_RDS_WAIT_TIMEOUT")
    if configured:
        return float(configured)
    if ctx.env.rds.multi_az:
        return max(ctx.wait_timeout, RDS_MULTI_AZ_WAIT_TIMEOUT)
    return ctx.wait_timeout


def wait_available(ctx: Ctx, change: Change) -> None:
    """Until the instance is available (its status every ctx.progress_seconds); records
    its endpoint (DB_HOST's Ref)."""
    describe = ctx.resolve(change.params["DescribeDBInstances"])
    limit = wait_timeout(ctx)

    def check() -> str | None:
        db = ctx.rds.describe_db_instances(**describe)["DBInstances"][0]
        address = db.get("Endpoint", {}).get("Address")
        status = db.get("DBInstanceStatus", "unknown")
        if address and status == "available":
            ctx.ids["db_endpoint"] = address
            return None
        return status

    multi_az = " (Multi-AZ)" if ctx.env.rds.multi_az else ""
    what = f"db_instance {describe['DBInstanceIdentifier']}{multi_az}, up to {limit / 60:.0f} min"
    ctx.wait_for(what, check, timeout=limit)


# ---- the master password (`params set DB_PASSWORD`) ----------------------------------------


def set_master_password(ctx: Ctx, value: str) -> bool:
    """Give the database its new master password, applied now, and wait until RDS has
    applied it; False when there is no database yet (apply creates it with SSM's value).
    Refused, before any change, for a database that is not this env's or not available."""
    identifier = ctx.d.resource_name("db")
    try:
        db = ctx.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    except ClientError as exc:
        if not not_found(exc):
            raise
        return False
    if not owned(tag_dict(db.get("TagList")), ctx.tags):
        raise AwsError(
            f"db_instance {identifier} is not tagged as {ctx.env.name}'s: take it over first "
            f"(`deploy.py apply --env {ctx.env.name}`), then set DB_PASSWORD"
        )
    if db.get("DBInstanceStatus") != "available":
        raise AwsError(
            f"db_instance {identifier} is {db.get('DBInstanceStatus')}: set DB_PASSWORD again "
            "once it is available (nothing was changed)"
        )
    ctx.rds.modify_db_instance(
        DBInstanceIdentifier=identifier, MasterUserPassword=value, ApplyImmediately=True
    )

    def applied() -> str | None:
        db = ctx.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        pending = "MasterUserPassword" in db.get("PendingModifiedValues", {})
        status = str(db.get("DBInstanceStatus"))
        return None if status == "available" and not pending else status

    try:
        ctx.wait_for(f"db_instance {identifier} to take the new password", applied)
    except AwsError:
        raise AwsError(
            f"db_instance {identifier} is still applying the new master password and SSM "
            "holds the old one: run the same `params set` again once it is available"
        ) from None
    ctx.report.line(f"  ~ db_instance {identifier}: master password (never shown)")
    return True


HANDLERS: Handlers = {
    ("db_subnet_group", "create"): create_subnet_group,
    ("db_subnet_group", "update"): update_subnet_group,
    ("db_parameter_group", "create"): create_parameter_group,
    ("db_parameter_group", "update"): update_parameter_group,
    ("db_snapshot", "create"): create_snapshot,
    ("db_instance", "create"): create_instance,
    ("db_instance", "update"): update_instance,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- destroy / status ----------------------------------------------------------------------


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """The instance, then its parameter and subnet groups. Its password parameter goes
    after it, with the params family (planned and run after this one). An instance
    destroy leaves in place (not the stack's, or adopted) keeps its groups and password."""
    want = desired(ctx)
    removal = instance_removal(ctx, want.instance, teardown)
    groups = group_removals(ctx, want)
    if "db_instance" in ctx.kept:
        for change in groups:
            keep(ctx, change.resource, change.name, "the database that stays uses it")
        return removal
    return [*removal, *groups]


def final_snapshot_name(identifier: str) -> str:
    """Timestamped, so a second destroy (of a re-created database) has a name of its own."""
    return f"{identifier}-final-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def instance_removal(ctx: Ctx, identifier: str, teardown: Teardown) -> list[Change]:
    try:
        db = ctx.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    except ClientError as exc:
        if not not_found(exc):
            raise
        return []
    tags = tag_dict(db.get("TagList"))
    if not owned(tags, ctx.tags) or (adopted(tags) and not teardown.include_adopted):
        ctx.kept.add("db_instance")
        if owned(tags, ctx.tags):
            keep(ctx, "db_instance", identifier, ADOPTED_KEPT)
        return []
    shown: tuple[str, ...] = ()
    params: dict[str, Any] = {}
    if db.get("DeletionProtection"):
        if not teardown.remove_deletion_protection:
            shown = ("deletion protection: on (kept: destroy never turns it off by itself)",)
            refused = {REFUSED: protection_refused("db_instance", identifier)}
            return [Change("delete", "db_instance", identifier, shown, refused)]
        params["ModifyDBInstance"] = {
            "DBInstanceIdentifier": identifier,
            "DeletionProtection": False,
            "ApplyImmediately": True,
        }
        shown = ("deletion protection: true -> false (--remove-deletion-protection)",)
    # automated backups stay for their retention period (AWS deletes them by default), and
    # a database with backups leaves a final snapshot; one without (the replica's) does not
    final: dict[str, Any] = {"SkipFinalSnapshot": True}
    shown += ("automated backups: kept",)
    if db.get("BackupRetentionPeriod", 0) > 0:
        snapshot = final_snapshot_name(identifier)
        final = {"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": snapshot}
        shown += (f"final snapshot: {snapshot}",)
    else:
        shown += ("final snapshot: none (no backups configured)",)
    params["DeleteDBInstance"] = {
        "DBInstanceIdentifier": identifier,
        "DeleteAutomatedBackups": False,
        **final,
    }
    params["DescribeDBInstances"] = {"DBInstanceIdentifier": identifier}  # until it is gone
    return [Change("delete", "db_instance", identifier, shown, params)]


def group_removals(ctx: Ctx, want: Desired) -> list[Change]:
    """The parameter group and the subnet group, when they carry the env's tags."""
    rds = ctx.rds
    arns: dict[str, str] = {}
    try:
        for g in rds.describe_db_parameter_groups(DBParameterGroupName=want.parameter_group)[
            "DBParameterGroups"
        ]:
            arns["db_parameter_group"] = g["DBParameterGroupArn"]
    except ClientError as exc:
        if not not_found(exc):
            raise
    try:
        for n in rds.describe_db_subnet_groups(DBSubnetGroupName=want.subnet_group)[
            "DBSubnetGroups"
        ]:
            arns["db_subnet_group"] = n["DBSubnetGroupArn"]
    except ClientError as exc:
        if not not_found(exc):
            raise
    deletes = {
        "db_parameter_group": (
            want.parameter_group,
            {"DeleteDBParameterGroup": {"DBParameterGroupName": want.parameter_group}},
        ),
        "db_subnet_group": (
            want.subnet_group,
            {"DeleteDBSubnetGroup": {"DBSubnetGroupName": want.subnet_group}},
        ),
    }
    changes = []
    for kind, (name, params) in deletes.items():
        if kind in arns:
            tags = rds.list_tags_for_resource(ResourceName=arns[kind]).get("TagList")
            if owned(tag_dict(tags), ctx.tags):
                changes.append(Change("delete", kind, name, (), params))
    return changes


def remove_instance(ctx: Ctx, change: Change) -> None:
    p, rds = change.params, ctx.rds
    if "ModifyDBInstance" in p:
        rds.modify_db_instance(**ctx.resolve(p["ModifyDBInstance"]))
        ctx.report.line(f"  ~ db_instance {change.name}: deletion_protection = false")
    rds.delete_db_instance(**ctx.resolve(p["DeleteDBInstance"]))
    ctx.report.line(f"  - db_instance {change.name}")
    describe = ctx.resolve(p["DescribeDBInstances"])

    def gone() -> str | None:
        try:
            found = rds.describe_db_instances(**describe)
        except ClientError as exc:
            if not_found(exc):
                return None
            raise
        return str(found["DBInstances"][0].get("DBInstanceStatus", "deleting"))

    ctx.wait_for(f"db_instance {change.name} to be deleted", gone)


def remove_group(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "DeleteDBParameterGroup" in p:
        ctx.rds.delete_db_parameter_group(**ctx.resolve(p["DeleteDBParameterGroup"]))
    if "DeleteDBSubnetGroup" in p:
        ctx.rds.delete_db_subnet_group(**ctx.resolve(p["DeleteDBSubnetGroup"]))
    ctx.report.line(f"  - {change.resource} {change.name}")


DESTROY_HANDLERS: Handlers = {
    ("db_instance", "delete"): remove_instance,
    ("db_parameter_group", "delete"): remove_group,
    ("db_subnet_group", "delete"): remove_group,
}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    if o.instance is None:
        return ["database: no instance"]
    return [
        f"database: {want.instance} {o.instance['status']} {o.instance['instance_class']} "
        f"postgres {o.instance['engine_version']} endpoint {ctx.ids.get('db_endpoint', '-')}"
    ]
