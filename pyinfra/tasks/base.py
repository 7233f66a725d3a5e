"""Base: OS packages, the app and web users, directories, the host's AWS settings."""

from io import StringIO

from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server

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
    server.group(name=f"group {user}", group=user, system=True)
    server.user(
        name=f"user {user}",
        user=user,
        group=user,
        home=f"/var/lib/{user}",
        shell="/usr/sbin/nologin",
        system=True,
        ensure_home=False,
    )
# The deploy's SSH user may reach Caddy's admin socket (group web_user, 0660): the
# tunnel of `deploy.py migrate --caddy-admin` / `deploy.py caddy` runs as that user.
ssh_user = host.data.get("ssh_user")
if ssh_user and ssh_user != "root":
    server.user(
        name=f"{ssh_user} in group {s.web_user} (Caddy's admin socket)",
        user=ssh_user,
        groups=[s.web_user],
        append=True,
        ensure_home=False,
    )
for path in (s.root, f"{s.root}/releases", f"{s.root}/artifacts", f"{s.root}/wheels", s.etc):
    files.directory(name=f"directory {path}", path=path, user="root", group="root", mode="755")

# The database's CA bundle (rds.ca_bundle): the app verifies the server with it
# (DB_SSLMODE=verify-full, DB_SSLROOTCERT). None: the host has it already (the fleet
# replica mounts its db's local CA there).
if s.db_ca_local is not None:
    files.directory(
        name=f"directory {s.db_ca_dir}", path=s.db_ca_dir, user="root", group="root", mode="755"
    )
    files.put(
        name=f"database CA bundle {s.db_ca} (public certificates)",
        src=str(s.db_ca_local),
        dest=s.db_ca,
        user="root",
        group="root",
        mode="644",
    )
files.put(
    name="AWS settings of this host (region, endpoint; credentials: the instance's own)",
    src=StringIO(s.aws_env_text),
    dest=s.aws_env_file,
    user="root",
    group="root",
    mode="644",
)
files.put(
    name="activate script (candidate /readyz, switch, rollback)",
    src=str(s.deploy_dir / "files" / "activate.sh"),
    dest=s.activate_script,
    user="root",
    group="root",
    mode="755",
)
