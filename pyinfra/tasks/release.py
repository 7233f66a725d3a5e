"""Release: upload the artifacts, build releases/<version>, render the env file from
SSM on the host, and run the release's migrations once (under the app's lock)."""

import jobtory_ops
from pyinfra.facts.files import File
from pyinfra.operations import files

from pyinfra import host

s = host.data.jobtory

# The wheelhouse only builds the venv: a host that has it (an earlier release with the
# same lock, or a baked image) gets neither the upload nor the unpacking.
if not host.get_fact(File, path=f"{s.root}/venvs/{s.wheels_id}/.ready"):
    files.put(
        name=f"wheelhouse {s.wheels_id}",
        src=str(s.wheels_archive_local),
        dest=s.wheels_archive,
        mode="644",
    )
    jobtory_ops.wheelhouse(
        name="unpack the wheelhouse", archive=s.wheels_archive, dest=s.wheels_dir
    )
files.put(
    name=f"release {s.version} sources",
    src=str(s.source_archive_local),
    dest=s.source_archive,
    mode="644",
)
jobtory_ops.release(
    name=f"build release {s.version} (venv from the wheelhouse)",
    root=s.root,
    version=s.version,
    archive=s.source_archive,
    wheels=s.wheels_dir,
    wheels_id=s.wheels_id,
)
env_op = jobtory_ops.env_file(
    name=f"env file {s.env_file} from SSM {s.ssm_prefix} (0600, {s.app_user})",
    release=s.release_dir,
    prefix=s.ssm_prefix,
    path=s.env_file,
    owner=s.app_user,
    aws_env_file=s.aws_env_file,
    want_sha256=s.env_sha256,
)
jobtory_ops.migrations(
    name=f"migrations of {s.version} (once, under the advisory lock)",
    release=s.release_dir,
    user=s.app_user,
    env_file=s.env_file,
)
jobtory_ops.remember("env", env_op)
