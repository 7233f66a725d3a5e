"""CreateLaunchTemplateVersion stores UserData unwrapped (moto 5.2.5).

CreateLaunchTemplate wraps the request's UserData in `Base64EncodedString`
(`parse_user_data`); CreateLaunchTemplateVersion stores the plain string. An Auto
Scaling group that launches from such a version then fails: `LaunchTemplateVersion.
user_data` asserts the wrapped type (HTTP 500 on CreateAutoScalingGroup,
UpdateAutoScalingGroup, SetDesiredCapacity...).

Upstream fix (moto/ec2/responses/launch_templates.py, create_launch_template_version):
wrap UserData with `parse_user_data` exactly as create_launch_template does. Here the
same is done one level down, where every caller meets it: `LaunchTemplate.create_version`
wraps a plain string (invalid base64 is refused as AWS does: InvalidUserData.Malformed).
"""

from __future__ import annotations

import functools
from typing import Any

from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateVersion
from moto.ec2.utils import parse_user_data

_MARK = "_jobtory_wraps_user_data"


def apply() -> None:
    original = LaunchTemplate.create_version
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def create_version(
        self: LaunchTemplate, data: dict[str, Any], description: str
    ) -> LaunchTemplateVersion:
        if isinstance(data.get("UserData"), str):
            data = {**data, "UserData": parse_user_data(data["UserData"])}
        return original(self, data, description)

    setattr(create_version, _MARK, True)
    LaunchTemplate.create_version = create_version  # type: ignore[method-assign]
