"""Secret values: the local replica's secrets file, and the values handlers need.

A secret's value is never part of a plan (a plan holds `Secret(name)`): the handler that
writes it fetches it at apply time into `ctx.secret_values`, from what this run already
knows (the secrets file read while planning), else the secrets file, else SSM, else,
where the plan says so, a new random value. Nothing here prints a value.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from botocore.exceptions import ClientError

from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import Ctx
from jobtory_stack.errors import AwsError


class Stored(Protocol):
    """What the secrets file needs to know about a parameter that exists in SSM."""

    @property
    def value(self) -> str: ...


def new_value(name: str) -> str:
    """A fresh random value of the shape the secret needs (spec.rules.secret_problem):
    Django's key 64 characters (check --deploy wants 50+), the rest 43; the URL-safe
    alphabet has none of the characters RDS refuses in a password (/ " @ space)."""
    return secrets.token_urlsafe(48 if name == "DJANGO_SECRET_KEY" else 32)


def fetch(ctx: Ctx, name: str, generate: bool = False) -> None:
    """Make `name`'s value available to ctx.resolve (ctx.secret_values)."""
    if name in ctx.secret_values:
        return
    if ctx.secrets_file is not None:
        stored = read_secrets_file(ctx.secrets_file)
        if name in stored:
            ctx.secret_values[name] = stored[name]
            return
    full = ctx.d.parameter_name(name)
    try:
        found = ctx.ssm.get_parameter(Name=full, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        if not generate:
            raise AwsError(
                f"{full}: no value at apply time (pass --secrets-file, or set it with "
                f"`deploy.py params set --env {ctx.env.name} {name}`)"
            ) from None
        found = new_value(name)
    ctx.secret_values[name] = found


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
    ctx: Ctx, path: Path, have: Mapping[str, Stored], generate: bool = True
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
            values[name] = new_value(name)
        else:
            continue
        changed = True
    if generate and (changed or (path.exists() and path.stat().st_mode & 0o077)):
        write_secrets_file(path, values)
        ctx.report.line(f"secrets file {path}: {len(values)} values (0600)")
    return values
