"""plan / apply / destroy / status over every resource family, in dependency order.

apply:   network -> database -> params -> dns/certs -> loadbalancer -> dns aliases -> scaling
destroy: the reverse (only what carries the environment's tags).
Each family is the same few plain functions: plan(ctx) (= diff(desired, observed)),
apply(ctx, changes), destroy(ctx), status(ctx).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobtory_stack.aws import database, dns, loadbalancer, network, params, scaling
from jobtory_stack.aws.core import Change, Ctx, render_plan
from jobtory_stack.errors import AwsError


@dataclass(frozen=True)
class Family:
    name: str
    plan: Callable[[Ctx], list[Change]]
    apply: Callable[[Ctx, list[Change]], None]


FAMILIES = (
    Family("network", network.plan, network.apply),
    Family("database", database.plan, database.apply),
    Family("params", params.plan, params.apply),
    Family("dns/certs", dns.plan, dns.apply),
    Family("loadbalancer", loadbalancer.plan, loadbalancer.apply),
    Family("dns aliases", dns.alias_plan, dns.alias_apply),
    Family("scaling", scaling.plan, scaling.apply),
)


def plan(ctx: Ctx) -> list[Change]:
    changes: list[Change] = []
    for family in FAMILIES:
        changes.extend(family.plan(ctx))
    return changes


def apply(ctx: Ctx) -> list[Change]:
    """Plan and apply family by family (later families see what earlier ones created)."""
    done: list[Change] = []
    for family in FAMILIES:
        changes = family.plan(ctx)
        if not changes:
            ctx.out(f"{family.name}: up to date")
            continue
        ctx.out(f"{family.name}: {len(changes)} change(s)")
        family.apply(ctx, changes)
        done.extend(changes)
    if done:
        ctx.out(render_plan(done)[-1].replace("Plan:", "Applied:"))
    else:
        ctx.out("no changes: the environment matches the spec")
    return done


def destroy(ctx: Ctx, yes_destroy_prod: bool = False) -> int:
    if ctx.env.name == "prod" and not yes_destroy_prod:
        raise AwsError("refusing to destroy prod: pass --yes-destroy-prod if you really mean it")
    allow = ctx.env.name != "prod" or yes_destroy_prod
    steps: tuple[tuple[str, Callable[[Ctx], int]], ...] = (
        ("scaling", scaling.destroy),
        ("loadbalancer", lambda c: loadbalancer.destroy(c, allow)),
        ("dns/certs", dns.destroy),
        ("params", params.destroy),
        ("database", lambda c: database.destroy(c, allow)),
        ("network", network.destroy),
    )
    total = 0
    for name, step in steps:
        count = step(ctx)
        ctx.out(f"{name}: {count} deleted" if count else f"{name}: nothing to delete")
        total += count
    ctx.out(f"Destroyed {total} resource(s) tagged stack={ctx.env.stack_name} env={ctx.env.name}.")
    return total


def status(ctx: Ctx) -> list[str]:
    lines: list[str] = []
    for fn in (
        network.status,
        database.status,
        params.status,
        dns.status,
        loadbalancer.status,
        scaling.status,
    ):
        lines.extend(fn(ctx))
    return lines
