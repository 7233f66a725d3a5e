"""RDS PostgreSQL: a DB subnet group (private subnets), a parameter group, the instance.

The parameter group's family is derived from the engine version (postgres17 for
17.x) and its name carries the family, so a major upgrade gets a fresh group. Static
parameters are set with ApplyMethod=pending-reboot, dynamic ones immediate. The
instance is private, encrypted, in the rds security group; prod keeps backups and
deletion protection (the spec's validation insists).

The master password is a SecureString (DB_PASSWORD under the env's SSM prefix, what
the app reads): taken from SSM when present, else generated and stored there BEFORE
the instance is created, so a failure in between leaves nothing unknown. Never printed.
After the instance exists its endpoint is recorded (ctx.ids["db_endpoint"]) and the
params family writes it to DB_HOST.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import Change, Ctx, field_diffs, fmt, tag_dict, tag_list
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.rds_parameters import CATALOG

PASSWORD_PARAMETER = "DB_PASSWORD"


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
        "owned": tag_dict(db.get("TagList")).get("env") == ctx.env.name,
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
    changes: list[Change] = []
    if have.subnet_group is None:
        changes.append(
            Change(
                "create",
                "db_subnet_group",
                want.subnet_group,
                (f"subnets: {', '.join(want.subnets)}",),
            )
        )
    elif have.subnet_group != sorted(want.subnets):
        diffs = field_diffs({"subnets": sorted(want.subnets)}, {"subnets": have.subnet_group})
        changes.append(Change("update", "db_subnet_group", want.subnet_group, diffs))
    wanted = {k: v for k, (v, _) in want.parameters.items()}
    if not have.parameter_group:
        shown = (
            f"family: {want.family}",
            *(f"{k} = {v} ({m})" for k, (v, m) in want.parameters.items()),
        )
        changes.append(Change("create", "db_parameter_group", want.parameter_group, shown))
    else:
        got = have.parameters or {}
        diffs = field_diffs(wanted, got) + tuple(
            f"{k}: {got[k]} -> (default)" for k in sorted(got.keys() - wanted.keys())
        )
        if diffs:
            changes.append(Change("update", "db_parameter_group", want.parameter_group, diffs))
    if have.instance is None:
        shown = (
            *(f"{k}: {fmt(v)}" for k, v in want.fields.items()),
            f"storage_encrypted: {ctx.env.rds.storage_encrypted}",
            "master password: SecureString in SSM (never shown)",
        )
        changes.append(Change("create", "db_instance", want.instance, shown))
    else:
        diffs = field_diffs(want.fields, have.instance)
        if have.instance["status"] == "creating":  # a wait cut short: apply waits again
            diffs += ("status: creating -> available (wait)",)
        if have.immutable and have.immutable["storage_encrypted"] != ctx.env.rds.storage_encrypted:
            diffs += (
                f"storage_encrypted: {have.immutable['storage_encrypted']} -> "
                f"{ctx.env.rds.storage_encrypted} (needs a new instance: not done in place)",
            )
        if diffs:
            changes.append(Change("update", "db_instance", want.instance, diffs))
    return changes


def plan(ctx: Ctx) -> list[Change]:
    want = desired(ctx)
    return diff(want, observe(ctx, want), ctx)


# ---- apply ---------------------------------------------------------------------------------


def master_password(ctx: Ctx) -> str:
    """DB_PASSWORD from SSM, or a new one stored there first (SecureString, tagged)."""
    name = ctx.d.parameter_name(PASSWORD_PARAMETER)
    try:
        return ctx.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
    value = secrets.token_urlsafe(32)
    ctx.ssm.put_parameter(
        Name=name,
        Value=value,
        Type="SecureString",
        Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
    )
    ctx.out(f"  + ssm_parameter {name} (SecureString, generated; never shown)")
    return value


def apply(ctx: Ctx, changes: list[Change]) -> None:
    if not changes:
        return
    rds = ctx.rds
    want = desired(ctx)
    have = observe(ctx, want)
    subnet_ids = [ctx.ids[f"subnet:{n}"] for n in want.subnets]
    if have.subnet_group is None:
        rds.create_db_subnet_group(
            DBSubnetGroupName=want.subnet_group,
            DBSubnetGroupDescription=f"{ctx.env.stack_name} {ctx.env.name} private subnets",
            SubnetIds=subnet_ids,
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        ctx.out(f"  + db_subnet_group {want.subnet_group}")
    elif have.subnet_group != sorted(want.subnets):
        rds.modify_db_subnet_group(DBSubnetGroupName=want.subnet_group, SubnetIds=subnet_ids)
        ctx.out(f"  ~ db_subnet_group {want.subnet_group}")
    if not have.parameter_group:
        rds.create_db_parameter_group(
            DBParameterGroupName=want.parameter_group,
            DBParameterGroupFamily=want.family,
            Description=f"{ctx.env.stack_name} {ctx.env.name} PostgreSQL parameters",
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        have.parameters = {}
        ctx.out(f"  + db_parameter_group {want.parameter_group} ({want.family})")
    got = have.parameters or {}
    to_set = [
        {"ParameterName": k, "ParameterValue": v, "ApplyMethod": m}
        for k, (v, m) in want.parameters.items()
        if got.get(k) != v
    ]
    for start in range(0, len(to_set), 20):  # the API takes at most 20 per call
        rds.modify_db_parameter_group(
            DBParameterGroupName=want.parameter_group,
            Parameters=to_set[start : start + 20],  # type: ignore[arg-type]
        )
    for p in to_set:
        shown = f"{p['ParameterName']} ({p['ApplyMethod']})"
        ctx.out(f"  ~ db_parameter_group {want.parameter_group}: {shown}")
    stale = sorted(got.keys() - want.parameters.keys())
    if stale:
        rds.reset_db_parameter_group(
            DBParameterGroupName=want.parameter_group,
            Parameters=[{"ParameterName": k, "ApplyMethod": "pending-reboot"} for k in stale],
        )
        ctx.out(f"  ~ db_parameter_group {want.parameter_group}: reset {', '.join(stale)}")
    reboot = [p["ParameterName"] for p in to_set if p["ApplyMethod"] == "pending-reboot"]
    f = want.fields
    if have.instance is None:
        rds.create_db_instance(
            DBInstanceIdentifier=want.instance,
            Engine=ctx.env.rds.engine,
            EngineVersion=f["engine_version"],
            DBInstanceClass=f["instance_class"],
            AllocatedStorage=f["allocated_storage"],
            StorageType="gp3",
            StorageEncrypted=ctx.env.rds.storage_encrypted,
            BackupRetentionPeriod=f["backup_retention"],
            DeletionProtection=f["deletion_protection"],
            MultiAZ=f["multi_az"],
            PubliclyAccessible=f["publicly_accessible"],
            DBSubnetGroupName=want.subnet_group,
            DBParameterGroupName=want.parameter_group,
            VpcSecurityGroupIds=[ctx.ids["sg:rds"]],
            DBName=ctx.env.rds.database,
            MasterUsername=ctx.env.rds.master_username,
            MasterUserPassword=master_password(ctx),
            CopyTagsToSnapshot=True,
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )
        ctx.out(f"  + db_instance {want.instance} (creating; this takes minutes on AWS)")
        reboot = []
    else:
        if have.immutable and have.immutable["storage_encrypted"] != ctx.env.rds.storage_encrypted:
            ctx.note(
                f"! db_instance {want.instance}: storage encryption cannot change in place; "
                "restore a snapshot into an encrypted instance (not automated)"
            )
        changed = {k: v for k, v in f.items() if have.instance.get(k) != v}
        if changed:
            modify: dict[str, Any] = {}
            keys = {
                "instance_class": "DBInstanceClass",
                "engine_version": "EngineVersion",
                "allocated_storage": "AllocatedStorage",
                "backup_retention": "BackupRetentionPeriod",
                "deletion_protection": "DeletionProtection",
                "multi_az": "MultiAZ",
                "publicly_accessible": "PubliclyAccessible",
                "parameter_group": "DBParameterGroupName",
            }
            for k, v in changed.items():
                if k == "security_groups":
                    modify["VpcSecurityGroupIds"] = [ctx.ids["sg:rds"]]
                else:
                    modify[keys[k]] = v
            if "EngineVersion" in modify:
                modify["AllowMajorVersionUpgrade"] = True
            rds.modify_db_instance(
                DBInstanceIdentifier=want.instance, ApplyImmediately=True, **modify
            )
            ctx.out(f"  ~ db_instance {want.instance}: {', '.join(sorted(changed))}")
    wait_available(ctx, want.instance)
    if reboot:
        ctx.note(
            f"! {', '.join(reboot)} apply at the next reboot (pending-reboot): "
            f"aws rds reboot-db-instance --db-instance-identifier {want.instance}"
        )


def wait_available(ctx: Ctx, identifier: str) -> None:
    def check() -> str | None:
        db = ctx.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        address = db.get("Endpoint", {}).get("Address")
        status = db.get("DBInstanceStatus", "unknown")
        if address and status == "available":
            ctx.ids["db_endpoint"] = address
            return None
        return status

    ctx.wait_for(f"db_instance {identifier}", check)


# ---- destroy / status ----------------------------------------------------------------------


def destroy(ctx: Ctx, allow_protected: bool = False) -> int:
    rds = ctx.rds
    want = desired(ctx)
    count = 0
    try:
        db = rds.describe_db_instances(DBInstanceIdentifier=want.instance)["DBInstances"][0]
    except ClientError as exc:
        if not not_found(exc):
            raise
        db = None
    if db is not None and tag_dict(db.get("TagList")) == {
        **tag_dict(db.get("TagList")),
        **ctx.tags,
    }:
        if db.get("DeletionProtection"):
            if not allow_protected:
                raise AwsError(f"{want.instance} has deletion protection; refusing")
            rds.modify_db_instance(
                DBInstanceIdentifier=want.instance, DeletionProtection=False, ApplyImmediately=True
            )
        final: dict[str, Any] = {"SkipFinalSnapshot": True}
        if ctx.env.rds.backup_retention_days > 0 and not ctx.emulator:
            final = {
                "SkipFinalSnapshot": False,
                "FinalDBSnapshotIdentifier": f"{want.instance}-final",
            }
        rds.delete_db_instance(DBInstanceIdentifier=want.instance, **final)
        ctx.out(f"  - db_instance {want.instance}")
        count += 1

        def gone() -> str | None:
            try:
                found = rds.describe_db_instances(DBInstanceIdentifier=want.instance)
            except ClientError as exc:
                if not_found(exc):
                    return None
                raise
            return str(found["DBInstances"][0].get("DBInstanceStatus", "deleting"))

        ctx.wait_for(f"db_instance {want.instance} to be deleted", gone)
    for kind, describe, delete in (
        ("db_parameter_group", "describe_db_parameter_groups", "delete_db_parameter_group"),
        ("db_subnet_group", "describe_db_subnet_groups", "delete_db_subnet_group"),
    ):
        key = "DBParameterGroupName" if kind == "db_parameter_group" else "DBSubnetGroupName"
        resource_name = want.parameter_group if kind == "db_parameter_group" else want.subnet_group
        try:
            listing: Any = getattr(rds, describe)(**{key: resource_name})
        except ClientError as exc:
            if not_found(exc):
                continue
            raise
        items = listing.get("DBParameterGroups") or listing.get("DBSubnetGroups") or []
        if not items:
            continue
        arn = items[0].get("DBParameterGroupArn") or items[0].get("DBSubnetGroupArn")
        if arn:
            tags = tag_dict(rds.list_tags_for_resource(ResourceName=arn).get("TagList"))
            if any(tags.get(k) != v for k, v in ctx.tags.items()):
                continue
        getattr(rds, delete)(**{key: resource_name})
        ctx.out(f"  - {kind} {resource_name}")
        count += 1
    return count


def status(ctx: Ctx) -> list[str]:
    want = desired(ctx)
    o = observe(ctx, want)
    if o.instance is None:
        return ["database: no instance"]
    return [
        f"database: {want.instance} {o.instance['status']} {o.instance['instance_class']} "
        f"postgres {o.instance['engine_version']} endpoint {ctx.ids.get('db_endpoint', '-')}"
    ]
