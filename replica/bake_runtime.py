"""The runtime a baked host image carries: the venv a release links to (venvs/<id>).

A team bakes its AMI with the OS packages and the locked Python dependencies, so a new
instance's first deploy unpacks the code and links the venv instead of building it.
The replica's stand-in EC2 image (compose/python/Dockerfile, target ec2) does the same:
this writes what to install and under which id, computed by the deployer's own code, so
the id is the one every release of the same lock names.

    python -m replica.bake_runtime OUT    # OUT/requirements.txt, requirements-host.txt, id
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobtory_stack.hosts.requirements import runtime_requirements, wheels_key


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    requirements, host_requirements = runtime_requirements(Path.cwd())
    (out / "requirements.txt").write_text(requirements)
    (out / "requirements-host.txt").write_text(host_requirements)
    (out / "id").write_text(wheels_key(requirements, host_requirements) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
