"""The fleet replica's helpers (compose/fleet.yaml): the deployer's SSH key pair."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLEET_DIR = REPO / ".local" / "fleet"


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
