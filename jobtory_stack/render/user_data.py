"""The Auto Scaling group's user data: a new instance runs the same pyinfra deploy against
@local, from the release's artifacts (template: jobtory_stack/templates/user-data.sh.j2)."""

from __future__ import annotations

from collections.abc import Mapping

from jobtory_stack.errors import HostsError
from jobtory_stack.render.templates import render_template
from jobtory_stack.spec.constants import VERSION_RE


def render_user_data(
    env_name: str, version: str, artifact_url: str = "", aws_env: Mapping[str, str] | None = None
) -> str:
    if not VERSION_RE.match(version):
        raise HostsError(f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return render_template(
        "user-data.sh.j2",
        env_name=env_name,
        version=version,
        artifact_url=artifact_url.rstrip("/"),
        aws_env=",".join(f"{k}={v}" for k, v in sorted((aws_env or {}).items())),
    )
