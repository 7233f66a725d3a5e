"""The images' build context: what git tracks in the checkout, nothing else.

scripts/build-images builds from a copy made here, never from the work tree itself: an
untracked `app/.env`, a key or a scratch file cannot reach an image even where
.dockerignore would miss it. The files are copied as they are in the work tree (an
uncommitted edit of a tracked file is built, as with the release tarball); the extra CA
bundle the script writes for a TLS-intercepting proxy (compose/certs/, gitignored,
certificates only) is the one addition.

    python3 -m replica.build_context DEST     (standard library only: run before any venv)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# written by scripts/build-images itself (certificates only, checked there)
EXTRA = ("compose/certs/extra-ca.crt",)


def tracked_files(repo: Path) -> list[str]:
    """Repo-relative names of the files git tracks and the work tree still has."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip()[:200]
        raise SystemExit(f"build context: {repo} is not a git checkout ({why})")
    names = (n for n in proc.stdout.decode().split("\0") if n)
    return sorted(n for n in names if (repo / n).is_file() and not (repo / n).is_symlink())


def export_context(repo: Path, dest: Path) -> list[str]:
    """Copy the tracked files (and EXTRA, when present) of `repo` to the empty `dest`."""
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"build context: {dest} is not empty")
    names = tracked_files(repo) + [n for n in EXTRA if (repo / n).is_file()]
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m replica.build_context DEST", file=sys.stderr)
        return 2
    names = export_context(REPO, Path(argv[0]))
    print(f"build context: {len(names)} files git tracks -> {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
