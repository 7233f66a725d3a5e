"""Every deploy moves the launch template: the release `deploy.py hosts` deploys is
published to the release store, then becomes the release the launch template's user data
boots (a new default version, the Auto Scaling group moved to it), so a scale-out or a
replacement instance boots what the fleet runs (aws.scaling.move_template).

An environment without an Auto Scaling group (the static fleet replica, unless the
emulator has the group) keeps deploying over SSH alone, as before.
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
from jobtory_stack.hosts.inventory import static_inventory
from jobtory_stack.hosts.release import Release, build_named
from jobtory_stack.hosts.settings import ARTIFACTS_DIR, REPO, DeployOptions, Manifest, parse_kv
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
    """Publish `release` (idempotent: what the store has is not uploaded again; a name
    alone must be published already), then make the launch template boot it and move the
    group to that version. The version, or None without an Auto Scaling group."""
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


def hosts_aws_env(env: Environment, spec: Path) -> dict[str, str] | None:
    """The AWS settings the hosts need (a static inventory's `jobtory_aws_env`: the
    replica's emulator as the hosts reach it); None on EC2, where they need none."""
    if not env.hosts.inventory:
        return None
    _, group = static_inventory((spec.resolve().parent / env.hosts.inventory).resolve())
    return parse_kv(group.get("jobtory_aws_env")) or None


def prepare_release(
    env: Environment, options: DeployOptions, out: Out = print, allow_dirty: bool = False
) -> DeployOptions:
    """Before the rolling part of `deploy.py hosts`: in an environment with an Auto
    Scaling group, the release to deploy is a store release (built from what git tracks
    unless --version names one), published, and the launch template moved to it; the
    options then name it, so the hosts get the same release over SSH."""
    ctx = new_ctx(env, out=out)
    with aws_errors():
        if not has_group(ctx):
            return options
    release: Release | str
    if options.version:
        release = local_release(options.version) or options.version
    else:
        release = build_named(options.source.resolve() if options.source else REPO,
                              allow_dirty=allow_dirty)  # fmt: skip
        out(f"release {release.name}: manifest sha256 {release.manifest_sha256}")
    name = release if isinstance(release, str) else release.name
    version = move_launch_template(env, release, hosts_aws_env(env, options.spec), out, ctx)
    if version is not None:
        out(f"launch template: v{version} boots {name}")
    return replace(options, version=name)


def user_data_for(env: Environment, release: str, aws_env: Mapping[str, str] | None) -> str:
    """`deploy.py hosts --user-data --version NAME`: the user data booting a published
    release (its manifest's sha256 read from the store)."""
    ctx = new_ctx(env, out=lambda line: None)
    with aws_errors():
        return scaling.release_user_data(
            ctx, release, scaling.manifest_sha256(ctx, release), aws_env
        )
