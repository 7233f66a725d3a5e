"""The replica's AWS emulator: moto's own server with the repository's patches.

    python -m replica.emulator [-H HOST] [-p PORT] ...   (moto_server's arguments)

It applies replica.moto_patches, then runs moto.server.main: still a real moto server
process, only with the gaps that block AWS-faithful code filled in. The `aws` service of
the replica and the tests' `moto_endpoint` fixture both start it this way."""

from __future__ import annotations

import sys

from replica.moto_patches import apply_all


def main(argv: list[str] | None = None) -> None:
    apply_all()
    from moto.server import main as moto_server  # after the patches: same process

    moto_server(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
