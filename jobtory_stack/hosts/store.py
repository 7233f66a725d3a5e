"""What the release store holds: publishing a release, listing and pruning them.

The bucket is aws.store's (created by `apply`). A release is its manifest,
`releases/<name>/manifest.json`, and the objects it lists, each stored under the sha256
of its content (`releases/objects/sha256/<hex>`): the code object of a release and the
wheelhouse it shares with every release of the same lock.

- publish is idempotent by hash: an object whose key already holds that sha256 (HeadObject)
  is not uploaded again, so a code-only change uploads only its code object; the
  manifest goes last, so a manifest in the store never names a missing object.
- prune keeps the newest N releases and every release still referenced (a launch
  template version's user data names it, or the caller says so: a host's current
  release, a rollback target), then deletes the objects no remaining release lists.
  Deleted objects stay recoverable as noncurrent versions until the bucket's lifecycle
  rule expires them (releases.noncurrent_days).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from jobtory_stack.aws import store
from jobtory_stack.aws.client import error_code
from jobtory_stack.aws.core import Ctx
from jobtory_stack.errors import AwsError
from jobtory_stack.hosts.release import Release
from jobtory_stack.spec.constants import RELEASE_MANIFEST_KEY, RELEASE_OBJECT_KEY

# An object younger than this is never pruned: a publish running now may have uploaded it
# and not yet its manifest.
PRUNE_GRACE = timedelta(hours=1)


def existing_bucket(ctx: Ctx) -> str:
    """The store's bucket; an error naming the fix when `apply` has not created it."""
    name = store.bucket_name(ctx)
    if store.observe_tags(ctx, name) is None:
        raise AwsError(
            f"the release store s3://{name} does not exist: create it with `deploy.py apply "
            f"--env {ctx.env.name}` first"
        )
    return name


def stored_sha256(ctx: Ctx, bucket: str, key: str) -> str | None:
    """The sha256 an object was published with; None when there is no such object."""
    try:
        head = store.s3(ctx).head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return str(head.get("Metadata", {}).get("sha256", ""))


def upload(ctx: Ctx, bucket: str, key: str, body: Any, sha256: str) -> None:
    """S3 checks the body against its sha256 (ChecksumSHA256) before it stores it."""
    store.s3(ctx).put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
        Metadata={"sha256": sha256},
    )


@dataclass(frozen=True)
class Published:
    release: str
    bucket: str
    manifest_key: str
    manifest_sha256: str
    uploaded: tuple[str, ...]  # keys
    uploaded_bytes: int
    present: tuple[str, ...]  # keys already in the store


def publish(ctx: Ctx, release: Release) -> Published:
    bucket = existing_bucket(ctx)
    uploaded: list[str] = []
    present: list[str] = []
    sent = 0
    for obj in release.objects:
        key, sha = obj["key"], obj["sha256"]
        have = stored_sha256(ctx, bucket, key)
        if have == sha:
            present.append(key)
            ctx.report.line(f"  = {obj['file']} ({size(obj['size'])}, already in the store)")
            continue
        if have is not None:  # the content-addressed key holds other bytes: replace them
            ctx.report.note(f"! {key} held other bytes (sha256 {have[:12]}); uploading again")
        with (release.out / obj["file"]).open("rb") as body:
            upload(ctx, bucket, key, body, sha)
        uploaded.append(key)
        sent += int(obj["size"])
        ctx.report.line(f"  + {obj['file']} ({size(obj['size'])})")
    key = RELEASE_MANIFEST_KEY.format(name=release.name)
    have = stored_sha256(ctx, bucket, key)
    if have is None:
        upload(ctx, bucket, key, release.manifest, release.manifest_sha256)
        uploaded.append(key)
        sent += len(release.manifest)
        ctx.report.line(f"  + {key}")
    elif have != release.manifest_sha256:
        raise AwsError(
            f"release {release.name} is already in s3://{bucket} with another manifest "
            f"(sha256 {have[:12]}, this build {release.manifest_sha256[:12]}): a release "
            "never changes once published; commit the change and publish the new release"
        )
    else:
        present.append(key)
    return Published(
        release.name, bucket, key, release.manifest_sha256, tuple(uploaded), sent, tuple(present)
    )


# ---- what the store holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A release in the store, as `release list` shows it."""

    name: str
    published: datetime  # when its manifest was written
    manifest_sha256: str
    objects: tuple[dict[str, Any], ...]
    referenced_by: str | None = None  # why prune keeps it (None: nothing references it)

    @property
    def size(self) -> int:
        return sum(int(o["size"]) for o in self.objects)


def stored_releases(ctx: Ctx, bucket: str, referenced: Mapping[str, str]) -> list[Stored]:
    """Every release in the store, newest first, with what references it."""
    client = store.s3(ctx)
    found: list[Stored] = []
    for name in store.release_names(ctx, bucket):
        key = RELEASE_MANIFEST_KEY.format(name=name)
        got = client.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
        try:
            objects = tuple(json.loads(body)["objects"])
        except (ValueError, KeyError, TypeError):
            objects = ()  # not a manifest this deployer wrote: listed, never trusted
        found.append(
            Stored(
                name,
                got["LastModified"],
                hashlib.sha256(body).hexdigest(),
                objects,
                referenced.get(name),
            )
        )
    return sorted(found, key=lambda r: (r.published, r.name), reverse=True)


def user_data_texts(encoded: str) -> Iterable[str]:
    """A launch template's UserData as the API gives it (base64), decoded once and, for
    an emulator that wraps it twice, twice."""
    text = encoded
    yield text
    for _ in range(2):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, ValueError):
            return
        yield text


def template_references(ctx: Ctx, names: Iterable[str]) -> dict[str, str]:
    """The releases (among `names`) a version of the environment's launch template boots:
    its user data names them. A new instance can boot any of those versions."""
    wanted = list(names)
    refs: dict[str, str] = {}
    template = ctx.d.resource_name("lt")
    try:
        pages = ctx.ec2.get_paginator("describe_launch_template_versions").paginate(
            LaunchTemplateName=template
        )
        versions = [v for page in pages for v in page["LaunchTemplateVersions"]]
    except ClientError as exc:
        if error_code(exc).startswith("InvalidLaunchTemplate"):
            return refs
        raise
    for version in sorted(versions, key=lambda v: int(v["VersionNumber"])):
        data = version.get("LaunchTemplateData", {}).get("UserData") or ""
        texts = list(user_data_texts(data))
        for name in wanted:
            if any(name in text for text in texts):
                default = " (default)" if version.get("DefaultVersion") else ""
                refs[name] = f"{template} v{version['VersionNumber']}{default}"
    return refs


def referenced_releases(
    ctx: Ctx, names: Iterable[str], also: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Release name -> what references it: the launch template's versions, and `also`
    (what the caller knows: a host's current release, a rollback target)."""
    return {**template_references(ctx, names), **(also or {})}


# ---- prune ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prune:
    """What `release prune` deletes, and what it keeps because it is referenced."""

    bucket: str
    releases: tuple[Stored, ...]  # deleted
    objects: tuple[tuple[str, int], ...]  # (key, size) deleted: no remaining release lists it
    kept: tuple[Stored, ...] = field(default=())  # older than the newest N, but referenced

    def __bool__(self) -> bool:
        return bool(self.releases or self.objects)


def prune_plan(
    ctx: Ctx,
    keep: int,
    also_referenced: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Prune:
    """Observes only. Keeps the newest `keep` releases and every referenced one."""
    if keep < 1:
        raise AwsError(f"--keep {keep}: keep at least 1 release")
    bucket = existing_bucket(ctx)
    names = store.release_names(ctx, bucket)
    referenced = referenced_releases(ctx, names, also_referenced)
    every = stored_releases(ctx, bucket, referenced)
    old = every[keep:]
    gone = tuple(r for r in old if r.referenced_by is None)
    kept = tuple(r for r in old if r.referenced_by is not None)
    remaining = [r for r in every if r not in gone]
    listed = {o["key"] for r in remaining for o in r.objects}
    if any(not r.objects for r in remaining):  # a manifest it cannot read: delete no object
        return Prune(bucket, gone, (), kept)
    cutoff = (now or datetime.now(UTC)) - PRUNE_GRACE
    objects: list[tuple[str, int]] = []
    pages = (
        store.s3(ctx)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=RELEASE_OBJECT_KEY.format(sha256=""))
    )
    for page in pages:
        for item in page.get("Contents", []):
            if item["Key"] not in listed and item["LastModified"] < cutoff:
                objects.append((item["Key"], int(item["Size"])))
    return Prune(bucket, gone, tuple(sorted(objects)), kept)


def prune(ctx: Ctx, plan: Prune) -> None:
    """Exactly `plan`: the releases' manifests first, then the objects they alone used."""
    keys = [RELEASE_MANIFEST_KEY.format(name=r.name) for r in plan.releases]
    keys += [key for key, _ in plan.objects]
    client = store.s3(ctx)
    for i in range(0, len(keys), store.DELETE_BATCH):
        batch = [{"Key": key} for key in keys[i : i + store.DELETE_BATCH]]
        result = client.delete_objects(Bucket=plan.bucket, Delete={"Objects": batch, "Quiet": True})
        failed = result.get("Errors", [])
        if failed:
            raise AwsError(
                f"could not delete {len(failed)} object(s) of s3://{plan.bucket}, e.g. "
                f"{failed[0].get('Key')} ({failed[0].get('Code')}); run prune again"
            )


def size(n: int | str) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
