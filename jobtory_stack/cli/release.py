"""`deploy.py release`: build a release from what git tracks, publish it to the
environment's release store, list and prune the store.

The domain is jobtory_stack.hosts.release (build) and jobtory_stack.hosts.store (the
store's contents); the bucket is aws.store's, created by `apply`. boto3 is imported by
the handlers that talk to AWS only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtory_stack.cli.common import (
    EXIT_OK,
    Confirmation,
    confirm_options,
    consent_from,
    endpoint_options,
    env_options,
    out,
    resolve_env,
)
from jobtory_stack.errors import HostsError
from jobtory_stack.spec.constants import VERSION_RE

if TYPE_CHECKING:
    from jobtory_stack.aws.core import Ctx
    from jobtory_stack.hosts.release import Release
    from jobtory_stack.spec.model import Environment

DESCRIPTION = """\
`deploy.py release`: releases, built from what git tracks, in the environment's store.

    deploy.py release build                      build it here (.local/releases), print it
    deploy.py release publish --env prod         build, then upload what the store lacks
    deploy.py release list --env prod            releases in the store, newest first
    deploy.py release prune --env prod --keep 10 delete old ones (never a referenced one)

A release is named <commit>-<digest of its code>: the shipped files git tracks (app,
package, pyinfra, templates) and the locked requirements, plus the wheelhouse the lock
gives. A work tree whose shipped files differ from the commit is refused unless
--allow-dirty (the name then ends in -dirty). Its manifest lists every object's key,
size and sha256; its own sha256 is what an instance's user data checks it against.

Docs: docs/releases.md.
"""


def build(args: argparse.Namespace) -> Release:
    from jobtory_stack.hosts import settings
    from jobtory_stack.hosts.release import build_named

    source = Path(args.source) if args.source else settings.REPO
    return build_named(source, settings.ARTIFACTS_DIR, settings.REPO, args.allow_dirty)


def show_release(release: Release) -> None:
    from jobtory_stack.hosts.store import size

    state = "dirty: the work tree differs from the commit" if release.dirty else "clean"
    out(f"release {release.name} (commit {release.commit[:10]}, {state})")
    for obj in release.objects:
        out(f"  {obj['role']:<6} {obj['file']}  {size(obj['size'])}  sha256 {obj['sha256']}")


def cmd_build(args: argparse.Namespace) -> int:
    release = build(args)
    if args.json:
        out(json.dumps(summary(release)))
        return EXIT_OK
    show_release(release)
    out(f"manifest sha256 {release.manifest_sha256}")
    return EXIT_OK


def summary(release: Release, **more: Any) -> dict[str, Any]:
    return {
        "release": release.name,
        "commit": release.commit,
        "dirty": release.dirty,
        "manifest_sha256": release.manifest_sha256,
        **more,
    }


def context(args: argparse.Namespace, env: Environment | None = None) -> Ctx:
    from jobtory_stack.aws.core import new_ctx

    env = env or resolve_env(args)
    # with --json, stdout holds the JSON alone: progress lines go to stderr
    progress = (lambda line: print(line, file=sys.stderr)) if getattr(args, "json", False) else out
    ctx = new_ctx(env, args.endpoint_url, progress)
    ctx.read_only = args.handler is cmd_list
    return ctx


def cmd_publish(args: argparse.Namespace) -> int:
    from jobtory_stack.aws.client import aws_errors
    from jobtory_stack.hosts.store import existing_bucket, publish, size

    ctx = context(args)
    with aws_errors():
        existing_bucket(ctx)  # before the build: a missing store is said at once
    release = build(args)
    if not args.json:
        show_release(release)
    with aws_errors():
        done = publish(ctx, release)
    if args.json:
        out(json.dumps(summary(release, bucket=done.bucket, uploaded=list(done.uploaded))))
        return EXIT_OK
    out(
        f"published to s3://{done.bucket}: {len(done.uploaded)} uploaded "
        f"({size(done.uploaded_bytes)}), {len(done.present)} already there"
    )
    out(f"manifest s3://{done.bucket}/{done.manifest_key}")
    out(f"manifest sha256 {done.manifest_sha256}")
    return EXIT_OK


def kept_releases(args: argparse.Namespace) -> dict[str, str]:
    """--keep-release NAME: what the caller knows to be referenced (a host, a rollback)."""
    names = args.keep_release or []
    for name in names:
        if not VERSION_RE.match(name):
            raise HostsError(
                f"--keep-release {name!r}: not a release name (letters, digits, '.', '_', '-')"
            )
    return {name: "--keep-release" for name in names}


def cmd_list(args: argparse.Namespace) -> int:
    from jobtory_stack.aws import store as bucket
    from jobtory_stack.aws.client import aws_errors
    from jobtory_stack.hosts.store import (
        existing_bucket,
        referenced_releases,
        size,
        stored_releases,
    )

    also = kept_releases(args)
    ctx = context(args)
    with aws_errors():
        name = existing_bucket(ctx)
        referenced = referenced_releases(ctx, bucket.release_names(ctx, name), also)
        found = stored_releases(ctx, name, referenced)
    if args.json:
        for r in found:
            row = {
                "release": r.name,
                "published": r.published.isoformat(),
                "size": r.size,
                "manifest_sha256": r.manifest_sha256,
                "referenced_by": r.referenced_by,
            }
            out(json.dumps(row))
        return EXIT_OK
    out(f"# s3://{name}: {len(found)} release(s), newest first")
    for r in found:
        ref = f"  referenced: {r.referenced_by}" if r.referenced_by else ""
        out(f"{r.name:<30} {r.published:%Y-%m-%d %H:%M} UTC  {size(r.size):>9}{ref}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from jobtory_stack.aws.client import aws_errors
    from jobtory_stack.hosts.store import prune, prune_plan, size

    env = resolve_env(args)
    keep = env.releases.keep if args.keep is None else args.keep
    if keep < 1:
        raise HostsError(f"--keep {keep}: keep at least 1 release")
    also = kept_releases(args)
    rule = Confirmation("prune", env, consent_from(args))
    if not args.dry_run:
        rule.check()  # before any call: what could never be confirmed is refused now
    ctx = context(args, env)
    with aws_errors():
        plan = prune_plan(ctx, keep, also)
    for r in plan.releases:
        out(f"- release {r.name} ({r.published:%Y-%m-%d}, {size(r.size)})")
    for key, bytes_ in plan.objects:
        out(f"- object {key} ({size(bytes_)}): no remaining release lists it")
    for r in plan.kept:
        out(f"  kept: release {r.name} (referenced: {r.referenced_by})")
    if not plan:
        out(f"nothing to prune: s3://{plan.bucket} keeps its newest {keep} and every referenced")
        return EXIT_OK
    if args.dry_run:
        out("dry run: nothing deleted")
        return EXIT_OK
    rule.confirm(f"these {len(plan.releases)} release(s) and {len(plan.objects)} object(s)")
    with aws_errors():
        prune(ctx, plan)
    out(
        f"pruned {len(plan.releases)} release(s) and {len(plan.objects)} object(s) from "
        f"s3://{plan.bucket} (recoverable until the lifecycle rule expires them: "
        f"{env.releases.noncurrent_days} days)"
    )
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "release",
        help="build / publish / list / prune releases in the environment's store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="release_command", required=True, metavar="ACTION")
    building = argparse.ArgumentParser(add_help=False)
    building.add_argument("--source", help="build from this checkout (default: this repo)")
    building.add_argument(
        "--allow-dirty",
        action="store_true",
        help="build although shipped files differ from the commit (named ...-dirty)",
    )
    building.add_argument("--json", action="store_true", help="print one JSON line")
    common = [env_options(), endpoint_options()]

    q = rsub.add_parser("build", parents=[building], help="build a release here and print it")
    q.set_defaults(handler=cmd_build)

    q = rsub.add_parser(
        "publish", parents=[*common, building], help="build, then upload what the store lacks"
    )
    q.set_defaults(handler=cmd_publish)

    keep_release = argparse.ArgumentParser(add_help=False)
    keep_release.add_argument(
        "--keep-release",
        action="append",
        metavar="NAME",
        help="a release still in use (a host's, a rollback target): never pruned (repeatable)",
    )
    q = rsub.add_parser(
        "list", parents=[*common, keep_release], help="the store's releases, newest first"
    )
    q.add_argument("--json", action="store_true", help="one JSON line per release")
    q.set_defaults(handler=cmd_list)

    q = rsub.add_parser(
        "prune",
        parents=[*common, keep_release, confirm_options()],
        help="delete old releases; never one a launch template or --keep-release references",
        description="Shows what it would delete and asks: --yes answers for scripts, a "
        "protected environment also needs its name (typed, or --confirm-env NAME).",
    )
    q.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="releases kept, newest first (default: the spec's releases.keep)",
    )
    q.add_argument("--dry-run", action="store_true", help="show what it would delete, only")
    q.set_defaults(handler=cmd_prune)
