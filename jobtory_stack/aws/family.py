"""The shape every resource family module has, and how a change reaches its handler.

A family module (network, database, params, dns, loadbalancer, scaling) is plain
functions, like pyinfra's facts and operations:

    desired(ctx)            what the spec wants (no AWS call beyond look-ups)
    observe(ctx, ...)       what exists (Describe/Get/List only)
    diff(...) -> [Change]   the changes, each with the exact parameters of its calls
    plan(ctx)               diff(desired, observe): never mutates anything
    apply(ctx, change)      executes exactly that change: dispatches on (resource,
                            action) to a small handler; no observing, no re-diffing
    destroy_plan(ctx, teardown)   the deletions of what the family owns (observes only)
    destroy_apply(ctx, change)    executes exactly one of them (DESTROY_HANDLERS)
    status(ctx)

`HANDLERS` maps (resource, action) to the handler; `apply` is `dispatch(HANDLERS, ...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jobtory_stack.aws.core import Ctx
from jobtory_stack.aws.plan import Action, Change
from jobtory_stack.errors import AwsError

Handler = Callable[[Ctx, Change], None]
Handlers = Mapping[tuple[str, Action], Handler]


def dispatch(handlers: Handlers, ctx: Ctx, change: Change) -> None:
    handler = handlers.get((change.resource, change.action))
    if handler is None:
        raise AwsError(f"no way to {change.title}: not a change this deployer plans")
    handler(ctx, change)


def resources(handlers: Handlers) -> frozenset[str]:
    return frozenset(resource for resource, _ in handlers)


@dataclass(frozen=True)
class Teardown:
    """How far `destroy` may go: what it never does unless told (its flags)."""

    # deletion protection is turned off only on request, never by destroy itself
    remove_deletion_protection: bool = False
    # what apply took over (tagged adopted=true) stays unless asked
    include_adopted: bool = False


ADOPTED_KEPT = "adopted: it existed before the stack; --include-adopted deletes it"


def keep(ctx: Ctx, resource: str, name: str, why: str) -> None:
    """A line saying what destroy leaves in place, and why (it is not in the plan)."""
    ctx.report.line(f"  kept: {resource} {name} ({why})")


def protection_refused(resource: str, name: str) -> str:
    return (
        f"{resource} {name} has deletion protection, and destroy never turns it off by "
        "itself: pass --remove-deletion-protection (or turn it off yourself) and run "
        "destroy again"
    )


@dataclass(frozen=True)
class Family:
    """One step of the dependency order, as reconcile runs it. `name` is what apply and
    destroy print ("network: 3 change(s)"); `resources` the kinds its changes have."""

    name: str
    plan: Callable[[Ctx], list[Change]]
    apply: Callable[[Ctx, Change], None]
    resources: frozenset[str]
    destroy_plan: Callable[[Ctx, Teardown], list[Change]] | None = None
    destroy_apply: Callable[[Ctx, Change], None] | None = None
    destroy_resources: frozenset[str] = frozenset()  # the kinds its deletions have
    status: Callable[[Ctx], list[str]] | None = None
