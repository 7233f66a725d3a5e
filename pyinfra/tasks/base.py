"""Base: OS packages, the app and web users, directories, the host's AWS settings."""

import jobtory_ops
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from pyinfra import host

s = host.data.jobtory

# python3-venv for the release venvs, curl for the /readyz checks. A baked image (an AMI,
# the fleet replica's jobtory/ec2) has them all: then apt is not even asked.
PACKAGES = ["python3", "python3-venv", "curl", "ca-certificates", "tzdata"]
installed = host.get_fact(DebPackages)
missing = [name for name in PACKAGES if name not in installed]
if missing:
    apt.packages(
        name=f"OS packages ({', '.join(missing)})",
        packages=missing,
        update=True,
        cache_time=86400,
        no_recommends=True,
    )
for user in (s.app_user, s.web_user):
    jobtory_ops.system_user(name=f"user and group {user}", user=user, home=f"/var/lib/{user}")
# The deploy's SSH user may reach Caddy's admin socket (group web_user, 0660): the
# tunnel of `deploy.py migrate --caddy-admin` / `deploy.py caddy` runs as that user.
ssh_user = host.data.get("ssh_user")
if ssh_user and ssh_user != "root":
    jobtory_ops.in_group(
        name=f"{ssh_user} in group {s.web_user} (Caddy's admin socket)",
        user=ssh_user,
        group=s.web_user,
    )
dirs = [s.root, f"{s.root}/releases", f"{s.root}/artifacts", f"{s.root}/wheels", s.etc]
# The database's CA bundle (rds.ca_bundle): the app verifies the server with it
# (DB_SSLMODE=verify-full, DB_SSLROOTCERT). None: the host has it already (the fleet
# replica mounts its db's local CA there).
if s.db_ca_local is not None:
    dirs.append(s.db_ca_dir)
jobtory_ops.directories(name="directories " + ", ".join(dirs), paths=dirs)
files = s.managed_files
for label in ("database CA bundle", "aws settings", "activate script"):
    if label in files:  # no CA bundle: the host has its database's CA already
        jobtory_ops.file(name=f"{label} {files[label].dest}", **vars(files[label]))
