"""Static inventory: the fleet replica's two stand-in EC2 hosts (compose/fleet.yaml).

pyinfra reaches them over SSH on published 127.0.0.1 ports, as `admin` with sudo (like
Debian's cloud images), with the key pair the replica's fleet tooling generates at run time in
.local/fleet/ (replica/fleet.py). On the hosts they read SSM from the replica's emulator (http://aws:4566)
with dummy credentials from a non-secret file: the stand-in for the instance profile.
"""

import os

_KEY = os.environ.get("JOBTORY_FLEET_KEY", ".local/fleet/id_ed25519")

fleet = (
    [
        (
            "ec2-1",
            {
                "ssh_hostname": "127.0.0.1",
                "ssh_port": int(os.environ.get("EC2_1_SSH_PORT", "2221")),
                "lb_target": "ec2-1:80",
            },
        ),
        (
            "ec2-2",
            {
                "ssh_hostname": "127.0.0.1",
                "ssh_port": int(os.environ.get("EC2_2_SSH_PORT", "2222")),
                "lb_target": "ec2-2:80",
            },
        ),
    ],
    {
        "ssh_user": "admin",
        "ssh_key": _KEY,
        "_sudo": True,
        # host keys are regenerated whenever a container is re-created
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
        # the ALB stand-in of the fleet (its HAProxy runtime API, published on 127.0.0.1)
        "alb_runtime": "127.0.0.1:" + os.environ.get("ALB_FLEET_RUNTIME_PORT", "9998"),
        # what the hosts' boto3 needs to reach the emulator (non-secret; EC2: nothing)
        "jobtory_aws_env": {
            "AWS_ENDPOINT_URL": "http://aws:4566",
            "AWS_SHARED_CREDENTIALS_FILE": "/etc/jobtory-instance/aws-credentials",
        },
    },
)
