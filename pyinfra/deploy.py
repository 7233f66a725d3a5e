"""The jobtory host deploy (pyinfra 3): one release of the app on a Debian/Ubuntu host.

    pyinfra inventory/fleet.py deploy.py --limit ec2-1 \
        --data jobtory_env=local --data jobtory_version=v1 --data jobtory_artifacts=.local/releases

Normally run by `deploy.py hosts --env E [--version V]` (rolling, drained, locked);
on a new ASG instance the same file runs against @local from the user data.
Idempotent: a second run with nothing new reports no changed operations.

Order: base (packages, users, directories, AWS settings) -> release (artifacts,
venv, env file from SSM, migrations) -> services (units, Caddyfile) -> activate
(/readyz before the switch, rollback on failure) -> prune (keep N releases).
The settings come from the spec through jobtory_stack.hosts.settings.HostSettings.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for extra in (HERE / "lib", HERE.parent):  # our facts/operations, and jobtory_stack
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from jobtory_facts import HostFingerprint  # noqa: E402

from jobtory_stack.hosts.settings import HostSettings  # noqa: E402
from pyinfra import host, local, logger  # noqa: E402

settings = HostSettings.from_host_data(host.data, deploy_dir=HERE)
host.data.jobtory = settings  # the task files read it from here

# A host that reports exactly what this deploy would leave (release, files, env file,
# services) needs no plan: one fact instead of every task's. Anything else plans in full.
want = settings.fingerprint()
if want and host.get_fact(HostFingerprint, **settings.fingerprint_query()) == want:
    logger.info(f"{host.name}: runs {settings.version} with these files and services: in sync")
else:
    for task in ("base", "release", "services", "activate"):
        local.include(str(HERE / "tasks" / f"{task}.py"))
