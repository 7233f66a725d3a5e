"""The Auto Scaling group's user data: a new instance runs the same pyinfra deploy against
@local, from the release's artifacts."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from jobtory_stack.errors import HostsError
from jobtory_stack.spec.constants import VERSION_RE

USER_DATA = """\
#!/bin/bash
# jobtory: bootstrap this new instance into the same state as its peers, by running
# the same pyinfra deploy against @local. Rendered by `deploy.py hosts --user-data`.
set -euo pipefail
exec > >(tee -a /var/log/jobtory-bootstrap.log) 2>&1
ENV_NAME={env}
VERSION={version}
ARTIFACT_URL={url}
ARTIFACTS=/var/lib/jobtory/artifacts
AWS_ENV={aws_env}
mkdir -p "$ARTIFACTS"
export DEBIAN_FRONTEND=noninteractive
if ! python3 -c 'import ensurepip' 2>/dev/null || ! command -v curl >/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3-venv curl ca-certificates
fi
fetch() {{  # artifacts already on the instance (baked or copied) are used as they are
    [ -s "$ARTIFACTS/$1" ] && return 0
    [ -n "$ARTIFACT_URL" ] || {{ echo "jobtory: $1 missing and no artifact URL" >&2; exit 1; }}
    curl -fsS --retry 5 -o "$ARTIFACTS/$1.tmp" "$ARTIFACT_URL/$1"
    mv "$ARTIFACTS/$1.tmp" "$ARTIFACTS/$1"
}}
fetch "release-$VERSION.json"
field() {{
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \\
        "$ARTIFACTS/release-$VERSION.json" "$1"
}}
SRC="$(field source)"; WHEELS="$(field wheels)"
fetch "$SRC"; fetch "$WHEELS"
B=/var/lib/jobtory/bootstrap
rm -rf "$B" && mkdir -p "$B/wheels"
tar -xzf "$ARTIFACTS/$SRC" -C "$B" && tar -xf "$ARTIFACTS/$WHEELS" -C "$B/wheels"
python3 -m venv "$B/venv"
"$B/venv/bin/pip" install -q --no-index --find-links "$B/wheels" \\
    --require-hashes -r "$B/requirements.txt"
cd "$B"
"$B/venv/bin/pyinfra" -y @local pyinfra/deploy.py \\
    --data jobtory_env="$ENV_NAME" --data jobtory_version="$VERSION" \\
    --data jobtory_artifacts="$ARTIFACTS" --data jobtory_aws_env="$AWS_ENV"
echo "jobtory: bootstrap of $VERSION done"
"""


def render_user_data(
    env_name: str, version: str, artifact_url: str = "", aws_env: Mapping[str, str] | None = None
) -> str:
    if not VERSION_RE.match(version):
        raise HostsError(f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-'")
    kv = ",".join(f"{k}={v}" for k, v in sorted((aws_env or {}).items()))
    return USER_DATA.format(
        env=shlex.quote(env_name),
        version=shlex.quote(version),
        url=shlex.quote(artifact_url.rstrip("/")),
        aws_env=shlex.quote(kv),
    )
