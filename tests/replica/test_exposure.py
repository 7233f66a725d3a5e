"""What the replica's app network (the "VPC": app, Caddy, the EC2 hosts) cannot reach."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import ON_THE_REPLICA_WORKER
from tests.replica.conftest import Replica, compose

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]

RUNTIME_PORT = 9999
# Connects to each address from inside the app container; prints one word per address.
PROBE = """
import socket, sys
for address in sys.argv[1:]:
    try:
        socket.create_connection((address, 9999), timeout=3).close()
        print("open")
    except OSError:
        print("closed")
"""


def test_the_alb_runtime_api_is_off_the_app_network(replica: Replica) -> None:
    """From the host's published 127.0.0.1 port the runtime API answers; from the app's
    container neither the alb's name on the app network nor its edge address does."""
    socket.create_connection(("127.0.0.1", RUNTIME_PORT), timeout=5).close()
    out = compose("exec", "-T", "app", "python3", "-c", PROBE, "alb", "172.30.1.10", timeout=60)
    assert out.stdout.split() == ["closed", "closed"]
