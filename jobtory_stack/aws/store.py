"""The release store: the stack's private S3 bucket that releases are published to.

One bucket per environment, `<stack>-<env>-releases-<account>` (spec.derived), tagged
like every resource of the stack:

- all four public-access-block settings on, and ACLs off (BucketOwnerEnforced): nothing
  in it can be made public, by policy or by ACL;
- versioning on: an overwritten or pruned object can be recovered;
- default encryption SSE-S3 (AES256). Not aws:kms: the AWS managed key gives no access
  boundary the bucket's IAM scoping does not already give, and each GetObject would then
  need kms:Decrypt in the instance role and a KMS request (a cost and a quota); hosts
  check every object's sha256 anyway (the manifest);
- a lifecycle rule: noncurrent versions expire after `releases.noncurrent_days`,
  incomplete multipart uploads after a week, and delete markers left alone are removed.

Drift in any of these (versioning suspended, the block removed) is planned as an update
and applied. Hosts read only `releases/` (the instance role, aws.scaling); publishing,
listing and pruning are jobtory_stack.hosts.store.

Destroy: a store that holds objects is emptied (every version) and deleted, except in a
protected environment, where that is refused unless --remove-deletion-protection says
so: the store has no deletion protection of its own, so the protected rule stands in.
"""

from __future__ import annotations

from typing import Any

from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError

from jobtory_stack.aws.client import RETRY_CONFIG, error_code
from jobtory_stack.aws.core import ADOPTION_SHOWN, Ctx, adopted, adoption_tags, owned, tag_list
from jobtory_stack.aws.family import ADOPTED_KEPT, Handlers, Teardown, dispatch, keep, resources
from jobtory_stack.aws.plan import REFUSED, SYMBOLS, Change, field_diffs
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.constants import RELEASE_MANIFEST_KEY, RELEASES_PREFIX

RESOURCE = "s3_bucket"
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SSE = "AES256"  # SSE-S3 (module docstring: why not aws:kms)
OWNERSHIP = "BucketOwnerEnforced"
LIFECYCLE_RULE = "expire-noncurrent"
ABORT_UPLOADS_DAYS = 7
# Calls of a create or an update, in the order they are made: the tags right after the
# bucket, so a store whose setup stops half-way is still the stack's (planned as an update)
OPERATIONS = (
    "CreateBucket",
    "PutBucketTagging",
    "PutBucketOwnershipControls",
    "PutPublicAccessBlock",
    "PutBucketVersioning",
    "PutBucketEncryption",
    "PutBucketLifecycleConfiguration",
)
# Against an emulator (compose's `aws:4566`) the bucket goes in the path, not the host name.
PATH_STYLE = RETRY_CONFIG.merge(Config(s3={"addressing_style": "path"}))
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def s3(ctx: Ctx) -> Any:
    """The S3 client (path-style addressing when an endpoint is given)."""
    return ctx.client("s3", config=PATH_STYLE if ctx.endpoint_url else None)


def account_id(ctx: Ctx) -> str:
    if "account" not in ctx.ids:
        ctx.ids["account"] = ctx.client("sts").get_caller_identity()["Account"]
    return ctx.ids["account"]


def bucket_name(ctx: Ctx) -> str:
    return ctx.d.release_bucket(account_id(ctx))


# ---- desired / observed --------------------------------------------------------------------


def lifecycle(days: int) -> dict[str, Any]:
    return {
        "Rules": [
            {
                "ID": LIFECYCLE_RULE,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_DAYS},
                "Expiration": {"ExpiredObjectDeleteMarker": True},
            }
        ]
    }


def lifecycle_shown(rules: list[dict[str, Any]] | None) -> str | None:
    """A lifecycle configuration as plan compares and prints it: ours, or what differs."""
    if not rules:
        return None
    if len(rules) != 1 or rules[0].get("ID") != LIFECYCLE_RULE:
        return f"{len(rules)} other rule(s)"
    rule = rules[0]
    days = rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
    abort = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    markers = rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker")
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix"))
    if rule.get("Status") != "Enabled" or prefix not in ("", None):
        return f"{LIFECYCLE_RULE} ({rule.get('Status')}, prefix {prefix!r})"
    shown = f"noncurrent versions expire after {days} days"
    if abort != ABORT_UPLOADS_DAYS or markers is not True:
        shown += f" (uploads aborted after {abort} days, delete markers removed: {markers})"
    return shown


def desired_fields(ctx: Ctx) -> dict[str, object]:
    days = ctx.env.releases.noncurrent_days
    return {
        "public_access_block": "all on",
        "object_ownership": OWNERSHIP,
        "versioning": "Enabled",
        "encryption": SSE,
        "lifecycle": lifecycle_shown(lifecycle(days)["Rules"]),
    }


def read(call: Any, missing: str, **args: Any) -> dict[str, Any] | None:
    """One Get* of the bucket's configuration; None when AWS says it has none (`missing`)."""
    try:
        return dict(call(**args))
    except ClientError as exc:
        if error_code(exc) == missing:
            return None
        raise


def observe_tags(ctx: Ctx, name: str) -> dict[str, str] | None:
    """The bucket's tags ({} untagged); None when there is no such bucket."""
    try:
        found = s3(ctx).get_bucket_tagging(Bucket=name)
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchBucket":
            return None
        if code == "NoSuchTagSet":
            return {}
        if code in ("AccessDenied", "AllAccessDisabled"):
            raise AwsError(
                f"cannot read the release store s3://{name} ({code}): the credentials lack "
                "s3:GetBucketTagging, or another account owns this bucket name"
            ) from None
        raise
    return {t["Key"]: t["Value"] for t in found.get("TagSet", [])}


def observe_fields(ctx: Ctx, name: str) -> dict[str, object]:
    client = s3(ctx)
    block = read(
        client.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", Bucket=name
    )
    settings = (block or {}).get("PublicAccessBlockConfiguration", {})
    off = [key for key in BLOCK_ALL if not settings.get(key)]
    controls = read(
        client.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", Bucket=name
    )
    ownership = [
        r.get("ObjectOwnership")
        for r in (controls or {}).get("OwnershipControls", {}).get("Rules", [])
    ]
    encryption = read(
        client.get_bucket_encryption,
        "ServerSideEncryptionConfigurationNotFoundError",
        Bucket=name,
    )
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
        for r in (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    ]
    rules = read(
        client.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", Bucket=name
    )
    return {
        "public_access_block": None
        if block is None
        else f"off: {', '.join(off)}"
        if off
        else "all on",
        "object_ownership": ownership[0] if ownership else None,
        "versioning": client.get_bucket_versioning(Bucket=name).get("Status"),
        "encryption": algorithms[0] if algorithms else None,
        "lifecycle": lifecycle_shown((rules or {}).get("Rules")),
    }


# ---- diff ----------------------------------------------------------------------------------


def calls(ctx: Ctx, name: str, fields: set[str]) -> dict[str, Any]:
    """The Put* calls that set `fields` as the spec wants them."""
    days = ctx.env.releases.noncurrent_days
    every: dict[str, tuple[str, dict[str, Any]]] = {
        "public_access_block": (
            "PutPublicAccessBlock",
            {"PublicAccessBlockConfiguration": dict(BLOCK_ALL)},
        ),
        "object_ownership": (
            "PutBucketOwnershipControls",
            {"OwnershipControls": {"Rules": [{"ObjectOwnership": OWNERSHIP}]}},
        ),
        "versioning": ("PutBucketVersioning", {"VersioningConfiguration": {"Status": "Enabled"}}),
        "encryption": (
            "PutBucketEncryption",
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE}}]
                }
            },
        ),
        "lifecycle": (
            "PutBucketLifecycleConfiguration",
            {"LifecycleConfiguration": lifecycle(days)},
        ),
    }
    return {op: {"Bucket": name, **args} for f, (op, args) in every.items() if f in fields}


def plan(ctx: Ctx) -> list[Change]:
    name = bucket_name(ctx)
    ctx.ids["release_bucket"] = name
    want = desired_fields(ctx)
    tags = observe_tags(ctx, name)
    if tags is None:
        params: dict[str, Any] = {"CreateBucket": create_args(ctx, name)}
        params["PutBucketTagging"] = {"Bucket": name, "Tagging": {"TagSet": tag_list(ctx.tags)}}
        params.update(calls(ctx, name, set(want)))
        shown = tuple(f"{k}: {v}" for k, v in want.items())
        return [Change("create", RESOURCE, name, shown, params)]
    have = observe_fields(ctx, name)
    shown = field_diffs(want, have)
    params = calls(ctx, name, {k for k in want if have.get(k) != want[k]})
    if not owned(tags, ctx.tags):  # an existing bucket with our name: taken over, said so
        merged = {**tags, **{t["Key"]: t["Value"] for t in adoption_tags(ctx.tags)}}
        params["PutBucketTagging"] = {"Bucket": name, "Tagging": {"TagSet": tag_list(merged)}}
        shown += (ADOPTION_SHOWN,)
    return [Change("update", RESOURCE, name, shown, params)] if params else []


def create_args(ctx: Ctx, name: str) -> dict[str, Any]:
    """us-east-1 is the one region CreateBucket refuses a LocationConstraint for."""
    if ctx.env.region == "us-east-1":
        return {"Bucket": name}
    return {"Bucket": name, "CreateBucketConfiguration": {"LocationConstraint": ctx.env.region}}


# ---- apply ---------------------------------------------------------------------------------


def write_bucket(ctx: Ctx, change: Change) -> None:
    client = s3(ctx)
    for op in OPERATIONS:
        if op in change.params:
            getattr(client, xform_name(op))(**ctx.resolve(change.params[op]))
    ctx.report.line(f"  {SYMBOLS[change.action]} {RESOURCE} {change.name}")


HANDLERS: Handlers = {
    (RESOURCE, "create"): write_bucket,
    (RESOURCE, "update"): write_bucket,
}
RESOURCES = resources(HANDLERS)


def apply(ctx: Ctx, change: Change) -> None:
    dispatch(HANDLERS, ctx, change)


# ---- destroy / status ----------------------------------------------------------------------


def versions(ctx: Ctx, name: str, prefix: str = "") -> list[dict[str, str]]:
    """Every object version and delete marker in the bucket (under `prefix`)."""
    found: list[dict[str, str]] = []
    paginator = s3(ctx).get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=name, Prefix=prefix):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    return found


def destroy_plan(ctx: Ctx, teardown: Teardown) -> list[Change]:
    name = bucket_name(ctx)
    tags = observe_tags(ctx, name)
    if tags is None or not owned(tags, ctx.tags):
        return []
    if adopted(tags) and not teardown.include_adopted:
        keep(ctx, RESOURCE, name, ADOPTED_KEPT)
        return []
    held = versions(ctx, name)
    if held and ctx.env.protected and not teardown.remove_deletion_protection:
        kept = (f"objects: {len(held)} version(s) (kept: a protected environment's releases)",)
        refused = {
            REFUSED: (
                f"{RESOURCE} {name} holds {len(held)} object version(s) and "
                f"{ctx.env.name} is protected: destroy never empties its release store by "
                "itself: pass --remove-deletion-protection (or empty it yourself) and run "
                "destroy again"
            )
        }
        return [Change("delete", RESOURCE, name, kept, refused)]
    params: dict[str, Any] = {}
    shown: tuple[str, ...] = ()
    if held:
        params["DeleteObjects"] = [
            {"Bucket": name, "Delete": {"Objects": held[i : i + DELETE_BATCH], "Quiet": True}}
            for i in range(0, len(held), DELETE_BATCH)
        ]
        shown = (f"objects: {len(held)} version(s) deleted with it (every release in it)",)
    params["DeleteBucket"] = {"Bucket": name}
    return [Change("delete", RESOURCE, name, shown, params)]


def remove_bucket(ctx: Ctx, change: Change) -> None:
    client = s3(ctx)
    for batch in change.params.get("DeleteObjects", []):
        failed = client.delete_objects(**ctx.resolve(batch)).get("Errors", [])
        if failed:
            first = failed[0]
            raise AwsError(
                f"could not delete {len(failed)} object(s) of s3://{change.name}, e.g. "
                f"{first.get('Key')} ({first.get('Code')}); run destroy again"
            )
    client.delete_bucket(**ctx.resolve(change.params["DeleteBucket"]))
    ctx.report.line(f"  - {RESOURCE} {change.name}")


DESTROY_HANDLERS: Handlers = {(RESOURCE, "delete"): remove_bucket}
DESTROY_RESOURCES = resources(DESTROY_HANDLERS)


def destroy_apply(ctx: Ctx, change: Change) -> None:
    dispatch(DESTROY_HANDLERS, ctx, change)


def release_names(ctx: Ctx, name: str) -> list[str]:
    """The releases published to the store (each has a manifest)."""
    suffix = RELEASE_MANIFEST_KEY.format(name="")[len(RELEASES_PREFIX) :]
    names = []
    paginator = s3(ctx).get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name, Prefix=RELEASES_PREFIX):
        for item in page.get("Contents", []):
            rest = item["Key"][len(RELEASES_PREFIX) :]
            if rest.endswith(suffix) and "/" not in rest[: -len(suffix)]:
                names.append(rest[: -len(suffix)])
    return sorted(names)


def status(ctx: Ctx) -> list[str]:
    name = bucket_name(ctx)
    if observe_tags(ctx, name) is None:
        return [f"release store: none (apply creates s3://{name})"]
    have = observe_fields(ctx, name)
    drift = field_diffs(desired_fields(ctx), have)
    line = f"release store: s3://{name} {len(release_names(ctx, name))} release(s)"
    return [line + (f" (differs from the spec: {'; '.join(drift)})" if drift else "")]
