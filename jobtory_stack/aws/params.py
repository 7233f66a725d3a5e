"""SSM Parameter Store: every parameter the spec names, under the environment's prefix.

Plain values (`derive(env).parameters`, plus DB_HOST from the RDS endpoint when the spec
does not give it) are String; the spec's secrets are SecureString. Values are compared
first (GetParametersByPath, decrypted) so unchanged ones are never rewritten.

Secrets are never invented for a cloud environment: a missing one is reported with the
command that sets it. Only the local replica passes a secrets file, whose missing values
are generated once and written back (0600) so re-runs keep them. No secret value is ever
printed: not by plan, diff, get, set, nor in an error.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import SYMBOLS, Change, Ctx, fmt, tag_list
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import RUNTIME_PARAMETERS

RESOURCE = "ssm_parameter"
SECURE: Final = "SecureString"
PLAIN: Final = "String"
SECRET_SHOWN = "<SecureString, set>"
# The database module creates this one with the instance (it is the master password).
DATABASE_OWNED_SECRETS = frozenset({"DB_PASSWORD"})


@dataclass(frozen=True)
class Param:
    """A desired parameter; `value` None = a secret whose value only SSM knows."""

    name: str
    value: str | None
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


def db_endpoint(ctx: Ctx) -> str | None:
    """The RDS endpoint address, if the instance exists (the database family records it)."""
    if "db_endpoint" in ctx.ids:
        return ctx.ids["db_endpoint"]
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


def observe(ctx: Ctx) -> dict[str, Observed]:
    prefix = ctx.env.ssm_prefix
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


def diff(want: Desired, have: Mapping[str, Observed], prefix: str = "") -> list[Change]:
    changes: list[Change] = []
    for name, p in want.params.items():
        o = have.get(name)
        full = prefix + name
        if o is None:
            if p.value is not None:
                shown = ("type: SecureString",) if p.secure else (f"value: {fmt(p.value)}",)
                changes.append(Change("create", RESOURCE, full, shown, p))
            continue
        diffs: list[str] = []
        if p.value is not None and p.value != o.value:
            diffs.append(
                "value differs" if p.secure or o.secure else f"value: {o.value} -> {p.value}"
            )
        if p.secure != o.secure:
            diffs.append(
                f"type: {SECURE if o.secure else PLAIN} -> {SECURE if p.secure else PLAIN}"
            )
        if not o.owned:
            diffs.append("tags: (none) -> stack, env")
        if diffs:
            changes.append(Change("update", RESOURCE, full, tuple(diffs), p))
    for name, o in have.items():
        if name not in want.params and name not in want.keep and o.owned:
            changes.append(Change("delete", RESOURCE, prefix + name, (), o))
    return changes


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
        values = local_secrets(ctx, ctx.secrets_file, have, generate=not ctx.read_only)
    want = desired(ctx, values)
    for name in missing_secrets(want, have):
        if name not in DATABASE_OWNED_SECRETS:
            ctx.note(missing_secret_hint(ctx, name))
    return diff(want, have, ctx.env.ssm_prefix)


# ---- apply ---------------------------------------------------------------------------------


def put(ctx: Ctx, name: str, value: str, secure: bool, exists: bool, owned: bool) -> None:
    full = ctx.d.parameter_name(name)
    kind: Literal["SecureString", "String"] = SECURE if secure else PLAIN
    if exists:
        ctx.ssm.put_parameter(Name=full, Value=value, Type=kind, Overwrite=True)
        if not owned:
            ctx.ssm.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=full,
                Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
            )
    else:
        ctx.ssm.put_parameter(
            Name=full,
            Value=value,
            Type=kind,
            Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
        )


def apply(ctx: Ctx, changes: list[Change], have: Mapping[str, Observed] | None = None) -> None:
    prefix = ctx.env.ssm_prefix
    if have is None:
        have = observe(ctx) if changes else {}
    for change in changes:
        name = change.name[len(prefix) :] if change.name.startswith(prefix) else change.name
        o = have.get(name)
        if change.action == "delete":
            ctx.ssm.delete_parameter(Name=ctx.d.parameter_name(name))
        else:
            p: Param = change.data
            # a secret whose value only SSM knows keeps it (e.g. String -> SecureString)
            value = p.value if p.value is not None else (o.value if o is not None else None)
            if value is not None and (o is None or value != o.value or p.secure != o.secure):
                put(ctx, name, value, p.secure, o is not None, o is None or o.owned)
            elif o is not None and not o.owned:
                ctx.ssm.add_tags_to_resource(
                    ResourceType="Parameter",
                    ResourceId=ctx.d.parameter_name(name),
                    Tags=tag_list(ctx.tags),  # type: ignore[arg-type]
                )
        ctx.out(f"  {SYMBOLS[change.action]} {RESOURCE} {change.name}")


def destroy(ctx: Ctx) -> int:
    """Delete every parameter under the prefix that carries the env's tags."""
    count = 0
    for name, o in observe(ctx).items():
        if o.owned:
            ctx.ssm.delete_parameter(Name=ctx.d.parameter_name(name))
            ctx.out(f"  - {RESOURCE} {ctx.d.parameter_name(name)}")
            count += 1
    return count


def status(ctx: Ctx) -> list[str]:
    have = observe(ctx)
    owned = sum(o.owned for o in have.values())
    want = desired(ctx)
    missing = [n for n in want.params if n not in have]
    line = f"ssm: {owned} parameters under {ctx.env.ssm_prefix}"
    if missing:
        line += f" (missing: {', '.join(missing)})"
    return [line]


# ---- the local replica's secrets file ------------------------------------------------------


def read_secrets_file(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AwsError(f"{path}: not a readable JSON secrets file ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise AwsError(f'{path}: must be a JSON object of strings {{"NAME": "value"}}')
    return dict(raw)


def write_secrets_file(path: Path, values: Mapping[str, str]) -> None:
    """Atomic replace, mode 0600 from the start (the value never sits in a wider file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(sorted(values.items())), handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def local_secrets(
    ctx: Ctx, path: Path, have: Mapping[str, Observed], generate: bool = True
) -> dict[str, str]:
    """Secret values for the replica: the file, else SSM's current value, else generated."""
    values = read_secrets_file(path)
    changed = False
    for name in ctx.d.secret_names:
        if name in values:
            continue
        if name in have:
            values[name] = have[name].value
        elif generate:
            values[name] = secrets.token_urlsafe(32)
        else:
            continue
        changed = True
    if generate and (changed or (path.exists() and path.stat().st_mode & 0o077)):
        write_secrets_file(path, values)
        ctx.out(f"secrets file {path}: {len(values)} values (0600)")
    return values


# ---- the commands' work --------------------------------------------------------------------


def sync(ctx: Ctx, secrets_file: Path | None = None) -> list[Change]:
    have = observe(ctx)
    values = local_secrets(ctx, secrets_file, have) if secrets_file else None
    want = desired(ctx, values)
    changes = diff(want, have, ctx.env.ssm_prefix)
    apply(ctx, changes, have)
    unchanged = len([n for n in want.params if n in have]) - sum(
        c.action == "update" for c in changes
    )
    created = sum(c.action == "create" for c in changes)
    updated = sum(c.action == "update" for c in changes)
    deleted = sum(c.action == "delete" for c in changes)
    ctx.out(
        f"params {ctx.env.ssm_prefix}: {created} created, {updated} updated, "
        f"{deleted} deleted, {unchanged} unchanged"
    )
    for name in missing_secrets(want, have):
        ctx.out(missing_secret_hint(ctx, name))
    if "DB_HOST" not in want.params:
        ctx.out("  DB_HOST: known once the database exists (apply writes its endpoint)")
    return changes


def diff_lines(ctx: Ctx, secrets_file: Path | None = None) -> list[str]:
    have = observe(ctx)
    values = local_secrets(ctx, secrets_file, have, generate=False) if secrets_file else None
    want = desired(ctx, values)
    lines: list[str] = []
    for change in diff(want, have):
        p = change.data
        if change.action == "create":
            shown = "(SecureString)" if p.secure else f"= {p.value}"
            lines.append(f"+ {change.name} {shown}")
        elif change.action == "delete":
            lines.append(f"- {change.name}")
        else:
            lines.append(f"~ {change.name} ({'; '.join(change.diffs)})")
    for name in missing_secrets(want, have):
        lines.append(missing_secret_hint(ctx, name))
    lines.append(f"{len(lines)} difference(s)." if lines else "No differences.")
    return lines


def get_lines(ctx: Ctx, name: str | None = None) -> list[str]:
    have = observe(ctx)
    secret_names = set(ctx.d.secret_names)

    def shown(n: str) -> str:
        o = have.get(n)
        if o is None:
            return "<missing>"
        return SECRET_SHOWN if (o.secure or n in secret_names) else o.value

    if name is not None:
        if name not in have:
            raise AwsError(
                f"{ctx.d.parameter_name(name)} is not set in SSM "
                f"(run `deploy.py params sync --env {ctx.env.name}` or `params set`)"
            )
        return [shown(name)]
    names = sorted(set(desired(ctx).params) | secret_names | set(have))
    width = max((len(n) for n in names), default=0)
    return [f"{n.ljust(width)}  {shown(n)}" for n in names]


def set_secret(ctx: Ctx, name: str, value: str) -> str:
    d = ctx.d
    if name in d.parameters:
        raise AwsError(
            f"{name} comes from the spec (ssm.values or derived); change stack.toml and run "
            f"`deploy.py params sync --env {ctx.env.name}`"
        )
    if name not in d.secret_names and name not in RUNTIME_PARAMETERS:
        raise AwsError(
            f"{name} is not a parameter of the spec; list it under ssm.secrets in stack.toml first"
        )
    if not value:
        raise AwsError(f"no value for {name} on stdin")
    secure = name in d.secret_names
    have = observe(ctx)
    o = have.get(name)
    if o is not None and o.value == value and o.secure == secure and o.owned:
        return f"{d.parameter_name(name)}: unchanged"
    put(ctx, name, value, secure, o is not None, o is None or o.owned)
    return f"{d.parameter_name(name)}: set ({SECURE if secure else PLAIN})"
