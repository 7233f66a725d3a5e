"""The fleet replica's helpers (compose/fleet.yaml): the deployer's SSH key pair, the
static inventory and its ALB stand-in, as tests and benchmarks reach them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from jobtory_stack.hosts.balancers import StandinBalancer
from jobtory_stack.hosts.inventory import Target, static_inventory

REPO = Path(__file__).resolve().parent.parent
FLEET_DIR = REPO / ".local" / "fleet"
FLEET_INVENTORY = REPO / "pyinfra" / "inventory" / "fleet.py"


def ensure_fleet_key(fleet_dir: Path = FLEET_DIR) -> Path:
    """The deployer's key pair for the fleet replica, generated at run time (never in the
    repo, never in an image). Only the public half is visible to the hosts."""
    key = fleet_dir / "id_ed25519"
    authorized = fleet_dir / "authorized" / "authorized_keys"
    if not key.exists():
        fleet_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(fleet_dir, 0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jobtory-fleet", "-f", str(key)],
            check=True,
        )
    public = key.with_suffix(".pub").read_text()
    authorized.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(authorized.parent, 0o755)
    if not authorized.exists() or authorized.read_text() != public:
        authorized.write_text(public)
    os.chmod(authorized, 0o644)
    return key


def fleet_inventory(path: Path = FLEET_INVENTORY) -> tuple[list[Target], dict[str, Any]]:
    """The fleet's hosts (as deploy targets) and its group data."""
    return static_inventory(path)


def fleet_balancer(path: Path = FLEET_INVENTORY) -> StandinBalancer:
    """The fleet's ALB stand-in, at the runtime address its inventory names."""
    return StandinBalancer(str(fleet_inventory(path)[1]["alb_runtime"]))


if __name__ == "__main__":
    # `python -m replica.fleet`: the key pair, before the fleet's hosts start (they mount
    # its public half).
    print(ensure_fleet_key())
