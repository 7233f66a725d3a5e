"""The public Debian AMI parameters (`/aws/service/debian/...`) are missing (moto 5.2.5).

AWS publishes, in every region, SSM parameters naming the latest official Debian AMIs,
e.g. `/aws/service/debian/release/13/latest/amd64`; a launch template resolves its AMI
from one. moto ships only Amazon Linux's (`/aws/service/ami-amazon-linux-latest/...`,
loaded on first access from moto/ssm/resources/), so code that reads the Debian one
gets ParameterNotFound.

Upstream change (moto/ssm/models.py, ParameterDict._check_loading_status, plus a
resource file): load the Debian names on first access like the Amazon Linux ones. Here
they name the region's Amazon Linux 2023 AMI from moto's own catalogue (an AMI that
moto's EC2 knows), since moto has no Debian images.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from moto.ssm.models import Parameter, ParameterDict

PREFIX = "/aws/service/debian/release/"
RELEASES = ("12", "13")
ARCHITECTURES = {
    "amd64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
_MARK = "_jobtory_loads_debian"


def names() -> list[str]:
    return [f"{PREFIX}{r}/latest/{arch}" for r in RELEASES for arch in ARCHITECTURES]


def _load(params: ParameterDict) -> None:
    for release in RELEASES:
        for arch, source in ARCHITECTURES.items():
            if source not in params:  # (loads moto's Amazon Linux parameters)
                continue
            found = params[source]
            name = f"{PREFIX}{release}/latest/{arch}"
            super(ParameterDict, params).__getitem__(name).append(
                Parameter(
                    account_id=params.account_id,
                    name=name,
                    value=found[-1].value,
                    parameter_type="String",
                    description=None,
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=datetime.now(UTC).timestamp(),
                    version=1,
                    data_type="aws:ec2:image",
                )
            )


def apply() -> None:
    original = ParameterDict._check_loading_status
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def check_loading_status(self: ParameterDict, key: str) -> None:
        original(self, key)
        if str(key or "").startswith(PREFIX) and not getattr(self, "_debian_loaded", False):
            self._debian_loaded = True  # type: ignore[attr-defined]
            _load(self)

    setattr(check_loading_status, _MARK, True)
    ParameterDict._check_loading_status = check_loading_status  # type: ignore[method-assign]
