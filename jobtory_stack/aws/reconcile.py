"""plan / apply / destroy / status over every resource family, in dependency order.

plan:    release store -> network -> database -> params -> dns/certs -> loadbalancer ->
         dns aliases -> scaling, in ONE pass that changes nothing. What an earlier family plans to
         create, a later one refers to as a Ref (known after apply): `ctx.planned` holds
         the keys the changes so far produce.
apply:   executes exactly the changes of a plan, in order (planning first when given none):
         each change goes to its family's handler for (resource, action), which records
         the ids it creates in ctx.ids for the Refs of later changes. Nothing is observed
         or diffed again, so a second apply after a complete one makes no mutating call.
destroy: the reverse, planned whole first (observing only, so it can be shown and
         confirmed), then executed exactly; only what carries the environment's tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from botocore.exceptions import ClientError

from jobtory_stack.aws import database, dns, loadbalancer, network, params, scaling, store
from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import Ctx, refuse_takeovers
from jobtory_stack.aws.family import Family, Teardown
from jobtory_stack.aws.plan import Change, Plan, refusals, summary
from jobtory_stack.errors import AwsError


def family(name: str, module: ModuleType) -> Family:
    """A family whose module has the whole shape (plan, apply, destroy_*, status)."""
    return Family(
        name,
        module.plan,
        module.apply,
        module.RESOURCES,
        module.destroy_plan,
        module.destroy_apply,
        module.DESTROY_RESOURCES,
        module.status,
    )


FAMILIES = (
    family("release store", store),  # needs nothing; hosts boot from it (scaling)
    family("network", network),
    family("database", database),
    family("params", params),
    family("dns/certs", dns),
    family("loadbalancer", loadbalancer),
    Family(
        "dns aliases",
        dns.alias_plan,
        dns.apply,
        dns.ALIAS_RESOURCES,
        dns.alias_destroy_plan,
        dns.destroy_apply,
        dns.ALIAS_DESTROY_RESOURCES,
    ),
    family("scaling", scaling),
)
ORDER = {resource: i for i, f in enumerate(FAMILIES) for resource in f.resources}


def family_of(change: Change) -> Family:
    if change.resource not in ORDER:
        raise AwsError(f"cannot {change.title}: no resource family has {change.resource}")
    return FAMILIES[ORDER[change.resource]]


# ---- plan ----------------------------------------------------------------------------------


def plan(ctx: Ctx) -> Plan:
    """The whole plan, family by family; remarks are reported per family (section)."""
    changes: list[Change] = []
    for family in FAMILIES:
        with ctx.report.section(family.name):
            found = family.plan(ctx)
        ctx.planned.update(key for change in found for key in change.produces)
        changes.extend(found)
    return Plan(tuple(changes), ctx.env.stack_name, ctx.env.name)


def held_plan(ctx: Ctx) -> Plan:
    """The plan, its remarks held per family: apply prints them with the family's header."""
    with ctx.report.hold():
        return plan(ctx)


# ---- apply ---------------------------------------------------------------------------------


def apply_change(ctx: Ctx, change: Change) -> None:
    """Exactly this change, by its family's handler; then its remarks."""
    family_of(change).apply(ctx, change)
    unrecorded = [key for key in change.produces if key not in ctx.ids]
    if unrecorded:  # a handler that forgot what it created: later Refs could not resolve
        raise AwsError(f"{change.title} did not record {', '.join(unrecorded)} (a bug)")
    ctx.planned.difference_update(change.produces)
    for note in change.notes:
        ctx.report.note(note)


def execute(ctx: Ctx, changes: Iterable[Change]) -> None:
    """Apply these changes in order, without headers (migrate applies single families)."""
    for change in changes:
        apply_change(ctx, change)


def sections(ctx: Ctx, plan: Plan) -> list[tuple[Family, list[Change]]]:
    """The plan's changes per family, after checking that it can be applied here: made for
    this environment, in dependency order, every Ref produced by an earlier change."""
    if (plan.stack, plan.env) not in {("", ""), (ctx.env.stack_name, ctx.env.name)}:
        raise AwsError(
            f"the plan is for {plan.stack} {plan.env}, not {ctx.env.stack_name} {ctx.env.name}"
        )
    unresolved = plan.unresolved(ctx.ids)
    if unresolved:
        raise AwsError(
            "the plan refers to values no earlier change of it creates: " + "; ".join(unresolved)
        )
    by_family: dict[str, list[Change]] = {f.name: [] for f in FAMILIES}
    last = 0
    for change in plan:
        index = ORDER.get(change.resource, -1)
        if index < last:
            raise AwsError(f"the plan is not in dependency order at {change.title}")
        by_family[FAMILIES[index].name].append(change)
        last = index
    return [(f, by_family[f.name]) for f in FAMILIES]


def apply(ctx: Ctx, plan: Plan | None = None) -> Plan:
    """Execute exactly `plan` (the current one when None), family by family."""
    if plan is None:
        plan = held_plan(ctx)
    parts = sections(ctx, plan)
    refuse_takeovers(ctx, plan)  # a protected env adopts only with --adopt-existing
    for family, changes in parts:
        ctx.report.release(family.name)
        if not changes:
            ctx.report.line(f"{family.name}: up to date")
            continue
        ctx.report.line(f"{family.name}: {len(changes)} change(s)")
        execute(ctx, changes)
    if plan.changes:
        ctx.report.line(summary(plan).replace("Plan:", "Applied:"))
    else:
        ctx.report.line("no changes: the environment matches the spec")
    return plan


# ---- destroy / status ----------------------------------------------------------------------


# Planned and run in this order: what uses a resource goes before it (the ASG before the
# target group, the listeners before the certificate); the database before its password
# (params), so a failed delete never leaves a database nobody can log in to; what a family
# keeps (ctx.kept) is known to the families after it (an adopted ALB keeps its names).
DESTROY_NAMES = (
    "scaling",
    "loadbalancer",
    "dns aliases",
    "dns/certs",
    "database",
    "params",
    "network",
    "release store",  # last: nothing the other families delete reads it
)
DESTROY_ORDER = tuple(next(f for f in FAMILIES if f.name == name) for name in DESTROY_NAMES)
DESTROY_FAMILY = {r: f for f in DESTROY_ORDER for r in f.destroy_resources}


NO_TEARDOWN_FLAGS = Teardown()


def destroy_plan(ctx: Ctx, teardown: Teardown = NO_TEARDOWN_FLAGS) -> Plan:
    """Every deletion, family by family in DESTROY_ORDER; observes only. A resource
    destroy may not delete as asked is a refused change (plan.REFUSED)."""
    changes: list[Change] = []
    ctx.kept.clear()
    for family in DESTROY_ORDER:
        assert family.destroy_plan is not None
        with ctx.report.section(family.name):
            changes.extend(family.destroy_plan(ctx, teardown))
    return Plan(tuple(changes), ctx.env.stack_name, ctx.env.name)


def refuse(plan: Plan) -> None:
    """Stop before the first call when a change of the plan may not be made."""
    why = refusals(plan)
    if why:
        raise AwsError("; ".join(why))


def destroy(ctx: Ctx, plan: Plan | None = None, teardown: Teardown = NO_TEARDOWN_FLAGS) -> int:
    """Execute exactly `plan` (a fresh destroy plan when None), family by family."""
    if plan is None:
        plan = destroy_plan(ctx, teardown)
    refuse(plan)
    by_family: dict[str, list[Change]] = {f.name: [] for f in DESTROY_ORDER}
    for change in plan:
        if change.resource not in DESTROY_FAMILY:
            raise AwsError(f"cannot {change.title}: no resource family deletes {change.resource}")
        by_family[DESTROY_FAMILY[change.resource].name].append(change)
    deleted = 0
    for family in DESTROY_ORDER:
        assert family.destroy_apply is not None
        for change in by_family[family.name]:
            family.destroy_apply(ctx, change)
        count = sum(c.action == "delete" for c in by_family[family.name])
        line = f"{family.name}: {count} deleted" if count else f"{family.name}: nothing to delete"
        ctx.report.line(line)
        deleted += count
    ctx.report.line(
        f"Destroyed {deleted} resource(s) tagged stack={ctx.env.stack_name} env={ctx.env.name}."
    )
    return deleted


# ---- params set ----------------------------------------------------------------------------


def set_secret(ctx: Ctx, name: str, value: str) -> list[str]:
    """`params set`: the name and the value's shape are checked before any call. The
    database's password goes to the database first, then to SSM, so the app is never
    given a password the database does not know: if RDS refuses, nothing changed; if SSM
    fails after, running the same command again finishes it (both writes repeat safely)."""
    params.check_settable(ctx, name, value)
    if name != database.PASSWORD_PARAMETER:
        return [params.set_secret(ctx, name, value)]
    have = params.current(ctx, name)
    if params.unchanged(ctx, name, value, have):  # RDS took it first, when it was set
        return [f"{params.full_name(ctx, name)}: unchanged"]
    changed = database.set_master_password(ctx, value)
    try:
        line = params.write(ctx, name, value, have)
    except ClientError as exc:
        if not changed:
            raise
        raise AwsError(  # AWS's message is left out: it could quote the value
            f"the database has the new password but SSM still holds the old one (PutParameter "
            f"failed: {error_code(exc)}); run the same `params set` again with the same value"
        ) from None
    if not changed:
        return [line, "  (no database yet: apply creates it with this password)"]
    return [
        line,
        f"! the hosts' env files still hold the old password: new database connections fail "
        f"until `deploy.py hosts --env {ctx.env.name}` has run",
    ]


def status(ctx: Ctx) -> list[str]:
    lines: list[str] = []
    for family in FAMILIES:
        if family.status is not None:
            lines.extend(family.status(ctx))
    return lines
