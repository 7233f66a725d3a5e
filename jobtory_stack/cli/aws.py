"""The AWS commands of deploy.py: params, plan, apply, destroy, status.

Every command takes --env/--spec and --endpoint-url; the endpoint is the flag, else
AWS_ENDPOINT_URL, else the spec's aws.endpoint_url (the `local` env: the emulator).
The reconciler (and so boto3) is imported by the handlers only.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtory_stack.cli.common import (
    EXIT_OK,
    Confirmation,
    Consent,
    confirm_options,
    consent_from,
    endpoint_options,
    env_options,
    out,
    resolve_env,
)

if TYPE_CHECKING:
    from jobtory_stack.aws.core import Ctx
    from jobtory_stack.spec.model import Environment


def context(args: argparse.Namespace, header: bool = False, env: Environment | None = None) -> Ctx:
    from jobtory_stack.aws.core import new_ctx

    ctx = new_ctx(env or resolve_env(args), args.endpoint_url, out)
    if getattr(args, "wait_timeout", None) is not None:
        ctx.wait_timeout = args.wait_timeout
    ctx.secrets_file = getattr(args, "secrets_file", None)
    ctx.release = getattr(args, "release", None)
    ctx.artifact_url = getattr(args, "artifact_url", None)
    ctx.adopt_existing = getattr(args, "adopt_existing", False)
    ctx.read_only = args.handler in (cmd_plan, cmd_status)
    if header:
        target = ctx.endpoint_url or "AWS"
        out(f"# {ctx.env.stack_name} {ctx.env.name} in {ctx.env.region} via {target}")
    return ctx


# ---- plan / apply / destroy / status -------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import reconcile
    from jobtory_stack.aws.client import aws_errors
    from jobtory_stack.aws.plan import adopts, render_plan

    ctx = context(args, header=True)
    with aws_errors():
        plan = reconcile.plan(ctx)
    for line in render_plan(plan):
        out(line)
    taken = ", ".join(f"{c.resource} {c.name}" for c in plan if adopts(c))
    if taken and ctx.env.protected:  # apply will refuse them (aws.core.refuse_takeovers)
        out(f"! {ctx.env.name} is protected: apply takes over {taken} only with --adopt-existing")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import reconcile
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args, header=True)
    with aws_errors():
        reconcile.apply(ctx)
    return EXIT_OK


def destroy_consent(args: argparse.Namespace) -> Consent:
    """--yes / --confirm-env; --yes-destroy-prod, kept for old scripts, is their alias
    `--yes --confirm-env prod` (so it confirms only an environment named prod)."""
    consent = consent_from(args)
    if not args.yes_destroy_prod:
        return consent
    print(
        "note: --yes-destroy-prod is an old alias of --yes --confirm-env prod",
        file=sys.stderr,
    )
    return Consent(True, consent.confirm_env or "prod")


def cmd_destroy(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import reconcile
    from jobtory_stack.aws.client import aws_errors
    from jobtory_stack.aws.family import Teardown
    from jobtory_stack.aws.plan import render_plan

    env = resolve_env(args)
    rule = Confirmation("destroy", env, destroy_consent(args))
    rule.check()  # before any call: what could never be confirmed is refused now
    ctx = context(args, header=True, env=env)
    teardown = Teardown(
        remove_deletion_protection=args.remove_deletion_protection,
        include_adopted=args.include_adopted,
    )
    with aws_errors():
        plan = reconcile.destroy_plan(ctx, teardown)
    for line in render_plan(plan):
        out(line)
    if not plan.changes:
        return EXIT_OK
    reconcile.refuse(plan)
    rule.confirm(f"these {len(plan)} change(s)")
    with aws_errors():
        reconcile.destroy(ctx, plan)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import reconcile
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args, header=True)
    with aws_errors():
        lines = reconcile.status(ctx)
    for line in lines:
        out(line)
    return EXIT_OK


# ---- params --------------------------------------------------------------------------------


def cmd_params_sync(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import params
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args)
    with aws_errors():
        params.sync(ctx, args.secrets_file)
    return EXIT_OK


def cmd_params_get(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import params
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args)
    with aws_errors():
        lines = params.get_lines(ctx, args.name)
    for line in lines:
        out(line)
    return EXIT_OK


def read_value(name: str) -> str:
    """The value from stdin (never argv): a prompt without echo on a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{name}: ")
    return sys.stdin.read().rstrip("\r\n")


def cmd_params_set(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import reconcile
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args)
    value = read_value(args.name)
    with aws_errors():
        for line in reconcile.set_secret(ctx, args.name, value):
            out(line)
    return EXIT_OK


def cmd_params_diff(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import params
    from jobtory_stack.aws.client import aws_errors

    ctx = context(args)
    with aws_errors():
        lines = params.diff_lines(ctx, args.secrets_file)
    for line in lines:
        out(line)
    return EXIT_OK


# ---- wiring --------------------------------------------------------------------------------


def release_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--release",
        metavar="VERSION",
        help="the release new ASG instances boot (default: JOBTORY_RELEASE_VERSION, else "
        "the one the launch template already carries)",
    )
    p.add_argument(
        "--artifact-url", metavar="URL", help="where new instances fetch the release's artifacts"
    )


def adopt_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adopt-existing",
        action="store_true",
        help="a protected environment: take over existing untagged resources with the "
        "stack's names (tagged adopted=true; destroy keeps them)",
    )


def register(sub: Any) -> None:
    common = [env_options(), endpoint_options()]
    secrets_help = "local replica only: secret values from this JSON file (see params sync)"
    p = sub.add_parser("plan", parents=common, help="what apply would change (+ / ~ / -)")
    p.add_argument("--secrets-file", type=Path, metavar="PATH", help=secrets_help)
    release_options(p)
    p.set_defaults(handler=cmd_plan)
    p = sub.add_parser(
        "apply", parents=common, help="create / update the environment's AWS resources"
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="bound on each wait (certificate, database, replacement); default 900",
    )
    p.add_argument("--secrets-file", type=Path, metavar="PATH", help=secrets_help)
    release_options(p)
    adopt_option(p)
    p.set_defaults(handler=cmd_apply)
    p = sub.add_parser(
        "destroy",
        parents=[*common, confirm_options()],
        help="delete everything tagged as this env's",
        description="Shows what it would delete and asks: --yes answers for scripts, a "
        "protected environment also needs its name (typed, or --confirm-env NAME).",
    )
    p.add_argument(
        "--remove-deletion-protection",
        action="store_true",
        help="turn deletion protection off to delete (destroy never does it by itself)",
    )
    p.add_argument(
        "--include-adopted",
        action="store_true",
        help="also delete what apply took over (tagged adopted=true); kept by default",
    )
    p.add_argument(
        "--yes-destroy-prod",
        action="store_true",
        help="old alias of --yes --confirm-env prod",
    )
    p.set_defaults(handler=cmd_destroy)
    p = sub.add_parser("status", parents=common, help="what exists now")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("params", help="SSM parameters: sync / get / set / diff")
    psub = p.add_subparsers(dest="params_command", required=True, metavar="ACTION")

    q = psub.add_parser("sync", parents=common, help="write every parameter the spec names")
    q.add_argument(
        "--secrets-file",
        type=Path,
        metavar="PATH",
        help="local replica only: secret values from this JSON file; missing ones are "
        "generated and written back (0600)",
    )
    adopt_option(q)
    q.set_defaults(handler=cmd_params_sync)

    q = psub.add_parser("get", parents=common, help="show parameters (secrets never shown)")
    q.add_argument("name", nargs="?", help="one parameter's short name, e.g. DB_HOST")
    q.set_defaults(handler=cmd_params_get)

    q = psub.add_parser("set", parents=common, help="set a secret; the value is read from stdin")
    q.add_argument("name", help="the secret's short name, e.g. DJANGO_SECRET_KEY")
    q.set_defaults(handler=cmd_params_set)

    q = psub.add_parser("diff", parents=common, help="spec vs SSM (+ add, ~ change, - remove)")
    q.add_argument("--secrets-file", type=Path, metavar="PATH", help="compare secrets too")
    q.set_defaults(handler=cmd_params_diff)
