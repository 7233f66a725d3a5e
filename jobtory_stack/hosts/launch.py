"""Every deploy moves the launch template: the release `deploy.py hosts` deploys is
published to the release store (`prepare_release`, before the deploy lock: publishing is
idempotent by hash), then, under the deploy lock (hosts.rolling), becomes the release the
launch template's user data boots (a new default version, the Auto Scaling group moved to
it: `move_launch_template`), so a scale-out or a replacement instance boots what the
fleet runs (aws.scaling.move_template).

An environment whose hosts come from a static inventory (`hosts.inventory`: the fleet
replica) is deployed over SSH alone: nothing is built for the store, published or moved,
and no AWS call is made for it (the replica's emulator has no release store; it may have
a group, `deploy.py migrate`'s step 6). An environment without an Auto Scaling group
likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from jobtory_stack.aws import scaling
from jobtory_stack.aws.client import aws_errors
from jobtory_stack.aws.core import Ctx, new_ctx
from jobtory_stack.hosts import store
from jobtory_stack.hosts.release import Release, build_named
from jobtory_stack.hosts.settings import ARTIFACTS_DIR, REPO, DeployOptions, Manifest
from jobtory_stack.spec.model import Environment

Out = Callable[[str], None]


def has_group(ctx: Ctx) -> bool:
    groups = ctx.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[ctx.d.resource_name("asg")]
    )["AutoScalingGroups"]
    return bool(groups)


def local_release(name: str, out: Path = ARTIFACTS_DIR) -> Release | None:
    """A release `deploy.py release build` left in `out`, as it was built (None if not)."""
    path = out / f"manifest-{name}.json"
    if not path.is_file():
        return None
    manifest = path.read_bytes()
    document = json.loads(manifest)
    artifacts = Manifest.load(out, name)
    return Release(name, str(document["commit"]), bool(document["dirty"]), artifacts, manifest, out)


def move_launch_template(
    env: Environment,
    release: Release | str,
    aws_env: Mapping[str, str] | None = None,
    out: Out = print,
    ctx: Ctx | None = None,
) -> int | None:
    """Make the launch template boot `release` and move the group to that version; a
    Release is published first (idempotent: what the store has is not uploaded again), a
    name alone must be published already (its manifest's sha256 is read from the store).
    The version, or None without an Auto Scaling group or with a static inventory (then
    without any AWS call). `rolling.deploy` calls it under the deploy lock."""
    if env.hosts.inventory:
        return None
    ctx = ctx or new_ctx(env, out=out)
    with aws_errors():
        if not has_group(ctx):
            return None
        if isinstance(release, Release):
            name, sha256 = release.name, store.publish(ctx, release).manifest_sha256
        else:
            name, sha256 = release, scaling.manifest_sha256(ctx, release)
        moved = scaling.move_template(ctx, name, sha256, aws_env)
    if moved is None:
        return None
    if not moved.created and not moved.group_moved:
        out(f"launch_template {moved.template} v{moved.version} already boots {name}")
    return moved.version


def prepare_release(
    env: Environment, options: DeployOptions, out: Out = print, allow_dirty: bool = False
) -> DeployOptions:
    """Before the rolling part of `deploy.py hosts` (and before its lock): in an
    environment with an Auto Scaling group, the release to deploy is a store release
    (built from what git tracks unless --version names one), published. The options then
    name it, so the hosts get the same release over SSH, and ask the deploy to move the
    launch template to it once it holds the lock. A static inventory (the fleet replica):
    the options as they are, no AWS call, nothing built or published."""
    if env.hosts.inventory:
        return options
    ctx = new_ctx(env, out=out)
    with aws_errors():
        if not has_group(ctx):
            return options
    if options.version and local_release(options.version) is None:
        name = options.version  # a name alone: it must be in the store already
        with aws_errors():
            scaling.manifest_sha256(ctx, name)
    else:
        release = local_release(options.version) if options.version else None
        if release is None:
            source = options.source.resolve() if options.source else REPO
            release = build_named(source, allow_dirty=allow_dirty)
            out(f"release {release.name}: manifest sha256 {release.manifest_sha256}")
        with aws_errors():
            store.publish(ctx, release)
        name = release.name
    return replace(options, version=name, launch_template=True)


def user_data_for(env: Environment, release: str, aws_env: Mapping[str, str] | None) -> str:
    """`deploy.py hosts --user-data --version NAME`: the user data booting a published
    release (its manifest's sha256 read from the store)."""
    ctx = new_ctx(env, out=lambda line: None)
    with aws_errors():
        return scaling.release_user_data(
            ctx, release, scaling.manifest_sha256(ctx, release), aws_env
        )
