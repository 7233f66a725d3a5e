"""The Auto Scaling group's user data: a new instance fetches its release from the release
store, verifies it against the manifest sha256 written here, then runs the same pyinfra
deploy against @local (template: jobtory_stack/templates/user-data.sh.j2, which embeds
jobtory_stack/templates/fetch_release.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from jobtory_stack.errors import HostsError
from jobtory_stack.render.templates import TEMPLATES_DIR, render_template
from jobtory_stack.spec.constants import VERSION_RE

FETCH_PROGRAM = "fetch_release.py"
# EC2 refuses user data over 16 KB; the launch template carries it base64-encoded
USER_DATA_LIMIT = 16 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def fetch_program() -> str:
    return (TEMPLATES_DIR / FETCH_PROGRAM).read_text().rstrip("\n")


def render_user_data(
    env_name: str,
    version: str,
    *,
    bucket: str,
    region: str,
    manifest_sha256: str,
    aws_env: Mapping[str, str] | None = None,
) -> str:
    """`manifest_sha256` empty: no release is published yet, and the boot says so."""
    if not VERSION_RE.match(version):
        raise HostsError(f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if manifest_sha256 and not SHA256_RE.match(manifest_sha256):
        raise HostsError(f"manifest sha256 {manifest_sha256!r}: 64 lowercase hex digits")
    return render_template(
        "user-data.sh.j2",
        env_name=env_name,
        version=version,
        manifest_sha256=manifest_sha256,
        bucket=bucket,
        region=region,
        aws_env=",".join(f"{k}={v}" for k, v in sorted((aws_env or {}).items())),
        fetch_program=fetch_program(),
    )
