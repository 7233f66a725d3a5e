"""Reading stack.toml: shared defaults plus one table of overrides per environment.

    load_stack(path) -> Stack          parse + structure (unknown keys refused)
    stack.env(name)  -> Environment    merged, typed and validated (rules.check)

Validation runs before any side effect. Every problem names the field (its path
in stack.toml) and the fix; all problems are reported at once in a SpecError.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from jobtory_stack.errors import SpecError
from jobtory_stack.spec.constants import (
    ENV_NAME,
    ENVIRONMENTS_KEY,
    LOCAL_ENV,
    PROTECTED_KEY,
    SECRET_NAME,
)
from jobtory_stack.spec.model import Environment, EnvironmentDoc
from jobtory_stack.spec.rules import check


@dataclass(frozen=True)
class Stack:
    """The parsed file: shared defaults and the raw overrides of each environment."""

    path: Path
    defaults: dict[str, Any]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def env_names(self) -> list[str]:
        return list(self.overrides)

    def env(self, name: str) -> Environment:
        if name not in self.overrides:
            known = ", ".join(self.overrides) or "none"
            raise SpecError(
                [
                    f"{ENVIRONMENTS_KEY}.{name}: unknown environment; known: {known} "
                    f"(add [{ENVIRONMENTS_KEY}.{name}] to {self.path.name} or pick one of them)"
                ]
            )
        merged = deep_merge(self.defaults, self.overrides[name])
        where = Locator(name, self.overrides[name])
        try:
            doc = EnvironmentDoc.model_validate(merged)
        except ValidationError as exc:
            raise SpecError([where.describe(err) for err in exc.errors()]) from None
        env = Environment(name, doc)
        problems, warnings = check(env)
        lines = [f"{where.field(path)}: {msg}" for path, msg in problems]
        if doc.protected is None and name != LOCAL_ENV:
            lines.insert(
                0,
                f"{ENVIRONMENTS_KEY}.{name}.{PROTECTED_KEY}: required outside {LOCAL_ENV}; "
                f"add `{PROTECTED_KEY} = true` to [{ENVIRONMENTS_KEY}.{name}] (deletion "
                "protection, backups, encryption, destroy confirmed by name), or "
                f"`{PROTECTED_KEY} = false` to waive it for data that can be thrown away",
            )
        if lines:
            raise SpecError(lines)
        return Environment(name, doc, tuple(f"{where.field(p)}: {m}" for p, m in warnings))


def load_stack(path: Path) -> Stack:
    """Read and structure stack.toml; raises SpecError with a one-line reason."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(
            [f"{path}: file not found (pass --spec PATH or run from the repo root)"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot read: {exc}"]) from None
    envs = raw.pop(ENVIRONMENTS_KEY, None)
    if not isinstance(envs, dict) or not envs:
        raise SpecError(
            [f"{ENVIRONMENTS_KEY}: missing; add at least one [{ENVIRONMENTS_KEY}.<name>] table"]
        )
    problems = []
    if PROTECTED_KEY in raw:  # each environment says it, where a reader of its table sees it
        problems.append(
            f"{PROTECTED_KEY}: not a shared default; write it in each environment's own table "
            f"([{ENVIRONMENTS_KEY}.<name>] {PROTECTED_KEY} = true or false)"
        )
    for name, body in envs.items():
        if not ENV_NAME.match(name):
            problems.append(
                f"{ENVIRONMENTS_KEY}.{name}: bad environment name; use lowercase letters, "
                "digits and '-', starting with a letter, at most 16 characters"
            )
        elif not isinstance(body, dict):
            problems.append(f"{ENVIRONMENTS_KEY}.{name}: must be a table of overrides")
    if problems:
        raise SpecError(problems)
    return Stack(path, raw, envs)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the default."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Locator:
    """Names a field where the user wrote it: in the env's overrides or the shared defaults."""

    env: str
    override: dict[str, Any]

    def field(self, path: tuple[str | int, ...]) -> str:
        node: Any = self.override
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return dotted(path)
        return f"{ENVIRONMENTS_KEY}.{self.env}.{dotted(path)}"

    def describe(self, err: Any) -> str:
        path = tuple(err["loc"])
        where = self.field(path)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            if SECRET_NAME.search(key):
                return (
                    f"{where}: secrets are never values in the spec; remove it, list its "
                    "name under ssm.secrets and set it with `deploy.py params set`"
                )
            allowed = allowed_keys(path[:-1])
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it"
            return f"{where}: unknown key; {hint} (allowed: {', '.join(allowed)})"
        if kind == "missing":
            return f"{where}: required; add it to the shared section or to every environment"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        return f"{where}: {err['msg'].lower()}{shown}; fix the value's type"


def dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """The keys a table at `path` accepts (for 'did you mean' hints)."""
    model: Any = EnvironmentDoc
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if info is None:
            return []
        model = next((a for a in _model_args(info.annotation)), None)
        if model is None:
            return []
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _model_args(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _model_args(arg)
