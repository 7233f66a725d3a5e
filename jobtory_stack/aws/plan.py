"""The plan: what apply will do, change by change, as Terraform prints it.

A `Change` is one create / update / delete of one resource: the field diffs `plan` prints,
and `params`, the exact parameters of every API call the change makes, under the call's
operation name (e.g. {"CreateVpc": {...}, "ModifyVpcAttribute": {...}}). A read the
change's handler polls (a wait) is named the same way (e.g. "DescribeDBInstances").

A value that only an EARLIER change can create (the id of a VPC that does not exist yet)
is a `Ref`: "known after apply". The change that creates it names the key in `produces`;
its handler records the value in `ctx.ids[key]`, and a later change's Refs are resolved
from there just before its calls. A `Secret` stands for a secret value, which is never
part of a plan: the handler fetches it at apply time (the local secrets file, SSM).

A `Plan` is the ordered changes of one environment. It serialises to JSON and back
losslessly (Refs and Secrets included), so a plan can be saved and applied later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from jobtory_stack.errors import AwsError

Action = Literal["create", "update", "delete"]
ACTIONS: tuple[Action, ...] = get_args(Action)
SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}
KNOWN_AFTER_APPLY = "(known after apply)"
FORMAT = "jobtory-plan/1"
# A change no API call may make (why, in its params under this key): the command stops
# before its first call, saying why.
REFUSED = "Refused"
# The tag apply adds, with the ownership tags, to an existing resource it takes over (an
# untagged one with the stack's name): destroy leaves such a resource unless asked.
ADOPTED_TAG = {"Key": "adopted", "Value": "true"}


@dataclass(frozen=True)
class Ref:
    """A value an earlier change of the plan creates: `ctx.ids[key]` once it ran."""

    key: str  # e.g. "vpc", "subnet:public-a", "sg:alb", "tg", "cert", "db_endpoint"

    def __str__(self) -> str:
        return KNOWN_AFTER_APPLY


@dataclass(frozen=True)
class Secret:
    """A secret's value (short SSM name): fetched by the handler, never in a plan."""

    name: str

    def __str__(self) -> str:
        return "(sensitive)"


def fmt(value: object) -> str:
    """A value as plan prints it."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def field_diffs(desired: Mapping[str, object], observed: Mapping[str, object]) -> tuple[str, ...]:
    """`key: old -> new` for every desired field whose observed value differs."""
    return tuple(
        f"{key}: {fmt(observed.get(key))} -> {fmt(value)}"
        for key, value in desired.items()
        if observed.get(key) != value
    )


# ---- values: JSON plus Refs and Secrets -----------------------------------------------------


def normalize(value: Any) -> Any:
    """The value as a plan holds it: JSON values (tuples become lists), Refs and Secrets.
    Anything else is a bug in the family that planned it."""
    if isinstance(value, Mapping):
        return {str(k): normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | Ref | Secret):
        return value
    raise TypeError(f"not a plan value: {value!r}")


def resolve(value: Any, ids: Mapping[str, str], secrets: Mapping[str, str]) -> Any:
    """`value` with every Ref replaced by what an earlier change recorded and every Secret
    by its fetched value."""
    if isinstance(value, Ref):
        if value.key not in ids:
            raise AwsError(
                f"{value.key} is not known: the change that creates it has not run "
                "(re-run plan and apply)"
            )
        return ids[value.key]
    if isinstance(value, Secret):
        if value.name not in secrets:
            raise AwsError(f"no value for the secret {value.name} at apply time")
        return secrets[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, ids, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, secrets) for v in value]
    return value


def refs(value: Any) -> Iterator[str]:
    """The keys of every Ref inside `value`."""
    if isinstance(value, Ref):
        yield value.key
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def _encode(value: object) -> object:
    if isinstance(value, Ref):
        return {"$ref": value.key}
    if isinstance(value, Secret):
        return {"$secret": value.name}
    raise TypeError(f"not a plan value: {value!r}")


def _decode(obj: dict[str, Any]) -> Any:
    if obj.keys() == {"$ref"}:
        return Ref(obj["$ref"])
    if obj.keys() == {"$secret"}:
        return Secret(obj["$secret"])
    return obj


# ---- changes and plans ----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One planned create / update / delete; apply executes exactly this."""

    action: Action
    resource: str
    name: str
    diffs: tuple[str, ...] = ()  # what plan prints under the change
    params: dict[str, Any] = field(default_factory=dict)  # operation -> its parameters
    produces: tuple[str, ...] = ()  # the ctx.ids keys its handler records (Refs name them)
    notes: tuple[str, ...] = ()  # remarks reported once it is applied

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        object.__setattr__(self, "diffs", tuple(self.diffs))
        object.__setattr__(self, "params", normalize(self.params))
        object.__setattr__(self, "produces", tuple(self.produces))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def title(self) -> str:
        return f"{self.action} {self.resource} {self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "resource": self.resource,
            "name": self.name,
            "diffs": list(self.diffs),
            "params": self.params,
            "produces": list(self.produces),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            action=data["action"],
            resource=data["resource"],
            name=data["name"],
            diffs=tuple(data.get("diffs", ())),
            params=dict(data.get("params", {})),
            produces=tuple(data.get("produces", ())),
            notes=tuple(data.get("notes", ())),
        )


@dataclass(frozen=True)
class Plan:
    """The ordered changes for one environment (`stack`, `env`)."""

    changes: tuple[Change, ...] = ()
    stack: str = ""
    env: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", tuple(self.changes))

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def unresolved(self, known: Iterable[str] = ()) -> list[str]:
        """Refs that neither `known` nor the change itself or an earlier one produces:
        such a plan cannot be applied (it was cut out of a larger one)."""
        available = set(known)
        missing: list[str] = []
        for change in self.changes:
            available.update(change.produces)
            missing.extend(
                f"{change.title}: {key}" for key in refs(change.params) if key not in available
            )
        return missing

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "stack": self.stack,
            "env": self.env,
            "changes": [c.to_dict() for c in self.changes],
        }
        return json.dumps(document, indent=2, default=_encode) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            document = json.loads(text, object_hook=_decode)
        except ValueError as exc:
            raise AwsError(f"not a saved plan (invalid JSON: {exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise AwsError(f"not a saved plan (expected format {FORMAT})")
        try:
            changes = tuple(Change.from_dict(c) for c in document["changes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AwsError(f"a saved plan with a malformed change ({exc})") from None
        return cls(changes, str(document.get("stack", "")), str(document.get("env", "")))


def adopts(change: Change) -> bool:
    """Whether the change takes over an existing resource (it writes ADOPTED_TAG)."""

    def found(value: Any) -> bool:
        if value == ADOPTED_TAG:
            return True
        if isinstance(value, dict):
            return any(found(v) for v in value.values())
        if isinstance(value, list):
            return any(found(v) for v in value)
        return False

    return found(change.params)


def refusals(changes: Iterable[Change]) -> list[str]:
    """Why each refused change of a plan cannot be made (see REFUSED)."""
    return [str(c.params[REFUSED]) for c in changes if REFUSED in c.params]


def render_plan(changes: Iterable[Change]) -> list[str]:
    """The plan as `deploy.py plan` prints it, ending with the summary line."""
    lines: list[str] = []
    items = list(changes)
    for change in items:
        lines.append(f"{SYMBOLS[change.action]} {change.title}")
        lines.extend(f"    {d}" for d in change.diffs)
    lines.append(summary(items))
    return lines


def summary(changes: Iterable[Change]) -> str:
    items = list(changes)
    if not items:
        return "No changes."
    add = sum(c.action == "create" for c in items)
    change = sum(c.action == "update" for c in items)
    destroy = sum(c.action == "delete" for c in items)
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."
