"""Dynamic inventory: an environment's EC2 hosts, from ownership tags and ASG membership.

    JOBTORY_ENV=prod pyinfra inventory/ec2.py deploy.py --data jobtory_env=prod ...

Set by `deploy.py hosts --env staging|prod`. SSH: JOBTORY_SSH_USER (admin),
JOBTORY_SSH_KEY, JOBTORY_SSH_VIA=private|public (private: from inside the VPC / a
bastion or SSM port forward).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobtory_stack.hosts.inventory import ec2_inventory
from jobtory_stack.spec.loader import load_stack

_spec = Path(os.environ.get("JOBTORY_SPEC") or Path(__file__).resolve().parents[2] / "stack.toml")
hosts = ec2_inventory(load_stack(_spec).env(os.environ["JOBTORY_ENV"]))
