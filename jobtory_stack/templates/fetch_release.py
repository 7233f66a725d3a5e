"""jobtory: fetch a release from the release store and verify it before anything runs.

Part of the launch template's user data (user-data.sh.j2 includes this file verbatim),
run by the system python3 before anything of the release is unpacked or run:

    python3 fetch_release.py BUCKET REGION RELEASE MANIFEST_SHA256 DEST

1. the manifest (releases/<RELEASE>/manifest.json) must have the sha256 written into the
   user data; 2. every object it lists must have the sha256 the manifest gives. Objects
   go to DEST only once all of them are verified; a mismatch stops with `jobtory: ...
   sha256 mismatch` on stderr (cloud-init copies it to the console output) and leaves
   DEST as it was. A file already in DEST (baked into the image) is used when its
   sha256 matches, so a fully baked host downloads nothing.

S3 is read with boto3 (Debian's python3-boto3, from its signed archive): its credential
chain takes AWS_* credentials from the environment or AWS_SHARED_CREDENTIALS_FILE
first, else the instance role through IMDSv2 (a token PUT, then the credentials);
AWS_ENDPOINT_URL(_S3) is passed explicitly, as older botocore (Debian 12) ignores it.
Standard library + boto3 only: nothing of the release is trusted yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

FORMAT = "jobtory-release/1"
MANIFEST_KEY = "releases/{name}/manifest.json"
OBJECT_KEY = "releases/objects/sha256/{sha256}"
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 1 << 20


def stop(message: str) -> NoReturn:
    print(f"jobtory: {message}; stopping the boot (nothing was unpacked or run)", file=sys.stderr)
    raise SystemExit(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class Store:
    def __init__(self, bucket: str, region: str) -> None:
        self.bucket, self.region = bucket, region
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:  # only when something must be downloaded
            import boto3

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            self._client = boto3.client("s3", region_name=self.region, endpoint_url=endpoint)
        return self._client

    def body(self, key: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            stop(
                f"cannot read s3://{self.bucket}/{key} ({code}): is the release published, "
                "and may the instance role read releases/*?"
            )
        except BotoCoreError as exc:
            stop(f"cannot read s3://{self.bucket}/{key}: {exc}")


def fetch_manifest(store: Store, name: str, want: str, dest: Path) -> tuple[bytes, dict[str, Any]]:
    key = MANIFEST_KEY.format(name=name)
    local = dest / f"manifest-{name}.json"
    data = local.read_bytes() if local.is_file() else b""
    if hashlib.sha256(data).hexdigest() != want:
        data = store.body(key).read()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        stop(f"manifest {key} sha256 mismatch: it has {got}, the user data expects {want}")
    try:
        document = json.loads(data)
    except ValueError:
        stop(f"manifest {key} is not JSON")
    if document.get("format") != FORMAT or document.get("release") != name:
        stop(f"manifest {key} is not a {FORMAT} manifest of release {name}")
    return data, document


def download(store: Store, obj: dict[str, Any], part: Path) -> None:
    """Into `part`, hashing on the way: a mismatch stops before the file is used."""
    digest = hashlib.sha256()
    with part.open("wb") as f:
        for block in store.body(obj["key"]).iter_chunks(CHUNK):
            digest.update(block)
            f.write(block)
    got = digest.hexdigest()
    if got != obj["sha256"]:
        part.unlink()
        stop(f"{obj['file']} ({obj['key']}) sha256 mismatch: it has {got}, the manifest says "
             f"{obj['sha256']}")  # fmt: skip


def fetch(bucket: str, region: str, name: str, want: str, dest: Path) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", want):
        stop(f"release {name}: no manifest sha256 in the user data (is a release published?)")
    dest.mkdir(parents=True, exist_ok=True)
    store = Store(bucket, region)
    manifest, document = fetch_manifest(store, name, want, dest)
    objects = document.get("objects") or []
    roles = {o.get("role"): o for o in objects}
    if set(roles) != {"code", "wheels"} or len(objects) != 2:
        stop(f"manifest of {name} does not list one code and one wheels object")
    ready: list[tuple[Path, Path]] = []  # (verified part, final name)
    try:
        for obj in objects:
            sha = str(obj.get("sha256", ""))
            key_ok = obj.get("key") == OBJECT_KEY.format(sha256=sha)
            if not PLAIN_NAME.match(str(obj.get("file", ""))) or not key_ok:
                stop(f"manifest of {name} lists an object with a bad file name or key: {obj}")
            final = dest / obj["file"]
            if final.is_file() and sha256_of(final) == sha:
                print(f"jobtory: {obj['file']} already here, sha256 verified")
                continue
            part = dest / f".{obj['file']}.part"
            download(store, obj, part)
            ready.append((part, final))
            print(f"jobtory: {obj['file']} fetched, sha256 verified")
    except BaseException:
        for part, _ in ready:
            part.unlink(missing_ok=True)
        raise
    for part, final in ready:  # every object verified: only now in place
        os.replace(part, final)
    (dest / f"manifest-{name}.json").write_bytes(manifest)
    code, wheels = roles["code"], roles["wheels"]
    artifacts = {  # what the pyinfra deploy reads (jobtory_stack.hosts.settings.Manifest)
        "version": name,
        "source": code["file"],
        "source_sha256": code["sha256"],
        "wheels": wheels["file"],
        "wheels_id": document.get("wheels_id", ""),
    }
    (dest / f"release-{name}.json").write_text(json.dumps(artifacts, indent=2, sort_keys=True))
    print(f"jobtory: release {name} verified (manifest sha256 {want})")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        stop("usage: fetch_release.py BUCKET REGION RELEASE MANIFEST_SHA256 DEST")
    fetch(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))
