"""SSM Parameter Store: every parameter the spec names, under the environment's prefix.

Plain values (`derive(env).parameters`, plus DB_HOST from the RDS endpoint when the spec
does not give it) are String; the spec's secrets are SecureString. Values are compared
first (GetParametersByPath, decrypted) so unchanged ones are never rewritten.

Secrets are never invented for a cloud environment: a missing one is reported with the
command that sets it. Only the local replica passes a secrets file, whose missing values
are generated once and written back (0600) so re-runs keep them (aws.secrets). No secret
value is ever printed: not by plan, diff, get, set, nor in an error; a plan holds
`Secret(name)`, fetched by the handler at apply time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from botocore.exceptions import ClientError

from jobtory_stack.aws import secrets
from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import (
    ADOPTION_SHOWN,
    Ctx,
    adoption_tags,
    refuse_takeovers,
    tag_list,
)
from jobtory_stack.aws.family import ADOPTED_KEPT, Handlers, Teardown, dispatch, keep, resources
from jobtory_stack.aws.plan import ADOPTED_TAG, SYMBOLS, Change, Ref, Secret, fmt
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import RUNTIME_PARAMETERS
from jobtory_stack.spec.rules import secret_problem

RESOURCE = "ssm_parameter"
SECURE: Final = "SecureString"
PLAIN: Final = "String"
SECRET_SHOWN = "<SecureString, set>"
# The database module creates this one with the instance (it is the master password).
DATABASE_OWNED_SECRETS = frozenset({"DB_PASSWORD"})


@dataclass(frozen=True)
class Param:
    """A desired parameter; `value` None = a secret whose value only SSM knows, a Ref = a
    value an earlier change of the plan creates (DB_HOST before the database exists)."""

    name: str
    value: str | Ref | None
    secure: bool


@dataclass(frozen=True)
class Observed:
    name: str
    value: str
    secure: bool
    owned: bool


@dataclass(frozen=True)
class Desired:
    params: dict[str, Param]
    keep: frozenset[str]  # names never deleted by sync (runtime values, secrets)


# ---- desired -------------------------------------------------------------------------------


def db_endpoint(ctx: Ctx) -> str | Ref | None:
    """The RDS endpoint address (the database family records it), a Ref when the plan
    creates the instance, None when there is no instance."""
    if "db_endpoint" in ctx.ids or "db_endpoint" in ctx.planned:
        return ctx.ref("db_endpoint")
    try:
        found = ctx.rds.describe_db_instances(DBInstanceIdentifier=ctx.d.resource_name("db"))
    except ClientError as exc:
        if error_code(exc) == "DBInstanceNotFound":
            return None
        raise
    for db in found["DBInstances"]:
        address = db.get("Endpoint", {}).get("Address")
        if address:
            ctx.ids["db_endpoint"] = address
            return address
    return None


def desired(ctx: Ctx, secret_values: Mapping[str, str] | None = None) -> Desired:
    d = ctx.d
    params = {name: Param(name, value, False) for name, value in d.parameters.items()}
    for name in sorted(RUNTIME_PARAMETERS - params.keys()):
        if name == "DB_HOST":
            endpoint = db_endpoint(ctx)
            if endpoint is not None:
                params[name] = Param(name, endpoint, False)
    for name in d.secret_names:
        params[name] = Param(name, (secret_values or {}).get(name), True)
    return Desired(
        dict(sorted(params.items())), frozenset(RUNTIME_PARAMETERS) | set(d.secret_names)
    )


# ---- observed ------------------------------------------------------------------------------


def observe(ctx: Ctx, prefix: str | None = None) -> dict[str, Observed]:
    """The parameters under the env's prefix (or `prefix`: the operators'), decrypted."""
    prefix = prefix or ctx.env.ssm_prefix
    values: dict[str, tuple[str, bool]] = {}
    for page in ctx.ssm.get_paginator("get_parameters_by_path").paginate(
        Path=prefix, Recursive=True, WithDecryption=True
    ):
        for p in page["Parameters"]:
            values[p["Name"][len(prefix) :]] = (p["Value"], p.get("Type") == SECURE)
    owned_names: set[str] = set()
    if values:
        filters = [
            {"Key": "Path", "Option": "Recursive", "Values": [prefix.rstrip("/")]},
            *({"Key": f"tag:{k}", "Values": [v]} for k, v in ctx.tags.items()),
        ]
        for described in ctx.ssm.get_paginator("describe_parameters").paginate(
            ParameterFilters=filters  # type: ignore[arg-type]
        ):
            owned_names.update(p["Name"][len(prefix) :] for p in described["Parameters"])
    return {
        name: Observed(name, value, secure, name in owned_names)
        for name, (value, secure) in sorted(values.items())
    }


# ---- diff ----------------------------------------------------------------------------------


def diff(
    want: Desired,
    have: Mapping[str, Observed],
    prefix: str = "",
    tags: Mapping[str, str] | None = None,
    written: frozenset[str] = frozenset(),
) -> list[Change]:
    """`written`: names an earlier change of the plan writes (DB_PASSWORD, with the
    database); they are not created twice."""
    tagged = tag_list(tags or {})
    changes: list[Change] = []
    for name, p in want.params.items():
        o = have.get(name)
        full = prefix + name
        if o is not None:
            changes.extend(update_change(p, o, full, tagged))
        elif p.value is not None and name not in written:
            shown = ("type: SecureString",) if p.secure else (f"value: {fmt(p.value)}",)
            put = {**put_args(p, full), "Tags": tagged}
            changes.append(Change("create", RESOURCE, full, shown, {"PutParameter": put}))
    for name, o in have.items():
        if name not in want.params and name not in want.keep and o.owned:
            delete = {"DeleteParameter": {"Name": prefix + name}}
            changes.append(Change("delete", RESOURCE, prefix + name, (), delete))
    return changes


def put_args(p: Param, full: str) -> dict[str, Any]:
    """PutParameter's arguments; a secret's value is never in a plan (a Secret)."""
    value: str | Ref | Secret | None = Secret(p.name) if p.secure else p.value
    return {"Name": full, "Value": value, "Type": kind(p.secure)}


def update_change(p: Param, o: Observed, full: str, tagged: list[dict[str, str]]) -> list[Change]:
    diffs: list[str] = []
    params: dict[str, Any] = {}
    if p.value is not None and p.value != o.value:
        secret = p.secure or o.secure
        diffs.append("value differs" if secret else f"value: {o.value} -> {fmt(p.value)}")
    if p.secure != o.secure:
        diffs.append(f"type: {kind(o.secure)} -> {kind(p.secure)}")
    if diffs:  # a secret whose value only SSM knows keeps it (e.g. String -> SecureString)
        params["PutParameter"] = {**put_args(p, full), "Overwrite": True}
    if not o.owned:  # an existing parameter under our prefix: taken over, said so
        diffs.append(ADOPTION_SHOWN)
        params["AddTagsToResource"] = {
            "ResourceType": "Parameter",
            "ResourceId": full,
            "Tags": [*tagged, dict(ADOPTED_TAG)],
        }
    return [Change("update", RESOURCE, full, tuple(diffs), params)] if diffs else []


def kind(secure: bool) -> Literal["SecureString", "String"]:
    return SECURE if secure else PLAIN


def missing_secrets(want: Desired, have: Mapping[str, Observed]) -> list[str]:
    return [
        name for name, p in want.params.items() if p.secure and p.value is None and name not in have
    ]


def missing_secret_hint(ctx: Ctx, name: str) -> str:
    how = f"set it with `deploy.py params set --env {ctx.env.name} {name}`"
    if name in DATABASE_OWNED_SECRETS:
        how += " (apply creates it together with the database)"
    return f"! {ctx.d.parameter_name(name)}: missing in SSM; {how}"


def plan(ctx: Ctx) -> list[Change]:
    have = observe(ctx)
    values = None
    if ctx.secrets_file is not None:
        values = secrets.local_secrets(ctx, ctx.secrets_file, have, generate=not ctx.read_only)
        ctx.secret_values.update(values)  # what the handlers write (never in the plan)
    want = desired(ctx, values)
    for name in missing_secrets(want, have):
        if name not in DATABASE_OWNED_SECRETS:
            ctx.report.note(missing_secret_hint(ctx, name))
    written = frozenset(k.split(":", 1)[1] for k in ctx.planned if k.startswith("ssm:"))
    return diff(want, have, ctx.env.ssm_prefix, ctx.tags, written)


# ---- apply ---------------------------------------------------------------------------------


def put(
    ctx: Ctx,
    name: str,
    value: str,
    secure: bool,
    exists: bool,
    owned: bool,
    full: str | None = None,
) -> None:
    """Write one parameter now (`params set`, migrate's transition values), under the
    env's prefix unless `full` names it; one that exists untagged is taken over (tagged
    adopted=true)."""
    full = full or ctx.d.parameter_name(name)
    if exists:
        ctx.ssm.put_parameter(Name=full, Value=value, Type=kind(secure), Overwrite=True)
        if not owned:
            adoption: Any = adoption_tags(ctx.tags)
            ctx.ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=full, Tags=adoption)
    else:
        tags: Any = tag_list(ctx.tags)
        ctx.ssm.put_parameter(Name=full, Value=value, Type=kind(secure), Tags=tags)


def write_parameter(ctx: Ctx, change: Change) -> None:
    p = change.params
    if "PutParameter" in p:
        value = p["PutParameter"]["Value"]
        if isinstance(value, Secret):
            secrets.fetch(ctx, value.name)
        ctx.ssm.put_parameter(**ctx.resolve(p["PutParameter"]))
    if "AddTagsToResource" in p:
        ctx.ssm.add_tags_to_resource(**ctx.resolve(p["AddTagsToResource"]))
    ctx.report.line(f"  {SYMBOLS[change.action]} {RESOURCE} {change.name}")


def delete_parameter(ctx: Ctx, change: Change) -> None:
    ctx.ssm.delete_parameter(**ctx.resolve(change.params["DeleteParameter"]))
    ctx.report.line(f"  - {RESOURCE} {change.name}")


HANDLERS: Handlers = {
    (RESOURCE, "create"): write_parameter,
    (RESOURCE, "update"): write_parameter,
    (RESOURCE, "delete"): delete_parameter,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


def adopted_names(ctx: Ctx, prefix: str) -> set[str]:
    """The parameters under `prefix` apply took over (tagged adopted=true)."""
    filters: Any = [
        {"Key": "Path", "Option": "Recursive", "Values": [prefix.rstrip("/")]},
        *({"Key": f"tag:{k}", "Values": [v]} for k, v in ctx.tags.items()),
        {"Key": f"tag:{ADOPTED_TAG['Key']}", "Values": [ADOPTED_TAG["Value"]]},
    ]
    names: set[str] = set()
    for page in ctx.ssm.get_paginator("describe_parameters").paginate(ParameterFilters=filters):
        names.update(p["Name"][len(prefix) :] for p in page["Parameters"])
    return names


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    """Every parameter under the env's prefix and the operators' that carries the env's
    tags; planned after the database (which goes first), so its password is deleted after
    it. A database destroy leaves in place keeps its password; adopted parameters stay
    unless asked."""
    changes: list[Change] = []
    for prefix, full_name_of in (
        (ctx.env.ssm_ops_prefix, ctx.d.ops_parameter_name),
        (ctx.env.ssm_prefix, ctx.d.parameter_name),
    ):
        owned = [name for name, o in observe(ctx, prefix).items() if o.owned]
        adopted = adopted_names(ctx, prefix) if owned and not teardown.include_adopted else set()
        for name in owned:
            full = full_name_of(name)
            if (
                prefix == ctx.env.ssm_prefix
                and name in DATABASE_OWNED_SECRETS
                and ("db_instance" in ctx.kept)
            ):
                keep(ctx, RESOURCE, full, "the database stays, and this is its master password")
            elif name in adopted:
                keep(ctx, RESOURCE, full, ADOPTED_KEPT)
            else:
                delete = {"DeleteParameter": {"Name": full}}
                changes.append(Change("delete", RESOURCE, full, (), delete))
    return changes


DESTROY_HANDLERS: Handlers = {(RESOURCE, "delete"): delete_parameter}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def status(ctx: Ctx) -> list[str]:
    have = observe(ctx)
    owned = sum(o.owned for o in have.values())
    want = desired(ctx)
    missing = [n for n in want.params if n not in have]
    line = f"ssm: {owned} parameters under {ctx.env.ssm_prefix}"
    if missing:
        line += f" (missing: {', '.join(missing)})"
    return [line]


# ---- the commands' work --------------------------------------------------------------------


def sync(ctx: Ctx, secrets_file: Path | None = None) -> list[Change]:
    """`params sync`: plan this family alone and apply it."""
    have = observe(ctx)
    values = secrets.local_secrets(ctx, secrets_file, have) if secrets_file else None
    ctx.secret_values.update(values or {})
    want = desired(ctx, values)
    changes = diff(want, have, ctx.env.ssm_prefix, ctx.tags)
    refuse_takeovers(ctx, changes)
    for change in changes:
        apply(ctx, change)
    unchanged = len([n for n in want.params if n in have]) - sum(
        c.action == "update" for c in changes
    )
    created = sum(c.action == "create" for c in changes)
    updated = sum(c.action == "update" for c in changes)
    deleted = sum(c.action == "delete" for c in changes)
    ctx.report.line(
        f"params {ctx.env.ssm_prefix}: {created} created, {updated} updated, "
        f"{deleted} deleted, {unchanged} unchanged"
    )
    for name in missing_secrets(want, have):
        ctx.report.line(missing_secret_hint(ctx, name))
    for line in missing_ops_hints(ctx):
        ctx.report.line(line)
    if "DB_HOST" not in want.params:
        ctx.report.line("  DB_HOST: known once the database exists (apply writes its endpoint)")
    return changes


def diff_lines(ctx: Ctx, secrets_file: Path | None = None) -> list[str]:
    have = observe(ctx)
    values = None
    if secrets_file:
        values = secrets.local_secrets(ctx, secrets_file, have, generate=False)
    want = desired(ctx, values)
    lines: list[str] = []
    for change in diff(want, have):
        if change.action == "create":
            put = change.params["PutParameter"]
            shown = "(SecureString)" if put["Type"] == SECURE else f"= {fmt(put['Value'])}"
            lines.append(f"+ {change.name} {shown}")
        elif change.action == "delete":
            lines.append(f"- {change.name}")
        else:
            lines.append(f"~ {change.name} ({'; '.join(change.diffs)})")
    for name in missing_secrets(want, have):
        lines.append(missing_secret_hint(ctx, name))
    lines.extend(missing_ops_hints(ctx))
    lines.append(f"{len(lines)} difference(s)." if lines else "No differences.")
    return lines


def missing_ops_hints(ctx: Ctx) -> list[str]:
    """The operators' secrets (ssm.ops_secrets) not in SSM yet, with the command."""
    names = ctx.d.ops_secret_names
    have = observe(ctx, ctx.env.ssm_ops_prefix) if names else {}
    return [
        f"! {ctx.d.ops_parameter_name(name)}: missing in SSM; set it with `deploy.py params "
        f"set --env {ctx.env.name} {name}` (operators only: the app never loads it)"
        for name in names
        if name not in have
    ]


def get_lines(ctx: Ctx, name: str | None = None) -> list[str]:
    """The env's parameters by short name, then the operators' by full name; a secret is
    only ever shown as <SecureString, set>."""
    d = ctx.d
    if name in d.ops_secret_names:
        ops = observe(ctx, ctx.env.ssm_ops_prefix)
        if name not in ops:
            raise AwsError(
                f"{d.ops_parameter_name(name)} is not set in SSM (run `deploy.py params set "
                f"--env {ctx.env.name} {name}`)"
            )
        return [SECRET_SHOWN]
    have = observe(ctx)
    secret_names = set(d.secret_names)

    def shown(n: str) -> str:
        o = have.get(n)
        if o is None:
            return "<missing>"
        return SECRET_SHOWN if (o.secure or n in secret_names) else o.value

    if name is not None:
        if name not in have:
            raise AwsError(
                f"{d.parameter_name(name)} is not set in SSM "
                f"(run `deploy.py params sync --env {ctx.env.name}` or `params set`)"
            )
        return [shown(name)]
    names = sorted(set(desired(ctx).params) | secret_names | set(have))
    ops = observe(ctx, ctx.env.ssm_ops_prefix) if d.ops_secret_names else {}
    rows = [(n, shown(n)) for n in names] + [
        (d.ops_parameter_name(n), SECRET_SHOWN if n in ops else "<missing>")
        for n in d.ops_secret_names
    ]
    width = max((len(n) for n, _ in rows), default=0)
    return [f"{n.ljust(width)}  {value}" for n, value in rows]


def full_name(ctx: Ctx, name: str) -> str:
    """Where a settable parameter lives: the operators' prefix or the env's."""
    d = ctx.d
    return d.ops_parameter_name(name) if name in d.ops_secret_names else d.parameter_name(name)


def check_settable(ctx: Ctx, name: str, value: str) -> None:
    """What `params set` refuses before any call: a name the spec does not list as a
    secret (or DB_HOST), and a value of the wrong shape (spec.rules.secret_problem)."""
    d = ctx.d
    if name in d.parameters:
        raise AwsError(
            f"{name} comes from the spec (ssm.values or derived); change stack.toml and run "
            f"`deploy.py params sync --env {ctx.env.name}`"
        )
    settable = {*d.secret_names, *d.ops_secret_names, *RUNTIME_PARAMETERS}
    if name not in settable:
        raise AwsError(
            f"{name} is not a parameter of the spec; list it under ssm.secrets in stack.toml first"
        )
    problem = secret_problem(name, value)
    if problem:
        raise AwsError(f"{name}: {problem}")


def current(ctx: Ctx, name: str) -> Observed | None:
    """The parameter as SSM has it now; one this stack did not create is refused in a
    protected environment (take it over with `params sync --adopt-existing` first)."""
    ops = name in ctx.d.ops_secret_names
    o = observe(ctx, ctx.env.ssm_ops_prefix if ops else None).get(name)
    if o is not None and not o.owned and ctx.env.protected:
        raise AwsError(
            f"{full_name(ctx, name)} exists but this stack did not create it, and "
            f"{ctx.env.name} is protected: take it over first with `deploy.py params sync "
            f"--env {ctx.env.name} --adopt-existing`"
        )
    return o


def unchanged(ctx: Ctx, name: str, value: str, o: Observed | None) -> bool:
    secure = name not in RUNTIME_PARAMETERS
    return o is not None and o.value == value and o.secure == secure and o.owned


def set_secret(ctx: Ctx, name: str, value: str) -> str:
    """`params set` of anything but the database's password (reconcile.set_secret)."""
    check_settable(ctx, name, value)
    return write(ctx, name, value, current(ctx, name))


def write(ctx: Ctx, name: str, value: str, o: Observed | None) -> str:
    """Write a checked value; `o` is what `current` found."""
    full = full_name(ctx, name)
    if unchanged(ctx, name, value, o):
        return f"{full}: unchanged"
    secure = name not in RUNTIME_PARAMETERS
    put(ctx, name, value, secure, o is not None, o is None or o.owned, full)
    return f"{full}: set ({SECURE if secure else PLAIN})"
