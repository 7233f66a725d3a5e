"""Small patches to moto (the replica's AWS emulator), each where moto 5.2.5 blocks code
written for AWS. One module per patch, each with `apply()` (idempotent) and a docstring
naming the gap and the upstream file it would change; each has its own test in
tests/aws/test_moto_patches.py that fails without it. `python -m replica.emulator`
applies them all, then runs moto's own server."""

from __future__ import annotations

from types import ModuleType

from replica.moto_patches import debian_ami_parameters, instance_refresh, launch_template_user_data

PATCHES: tuple[ModuleType, ...] = (
    launch_template_user_data,
    instance_refresh,
    debian_ami_parameters,
)


def apply_all() -> None:
    for patch in PATCHES:
        patch.apply()
