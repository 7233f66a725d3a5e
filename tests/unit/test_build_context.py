"""The images are built from what git tracks: an untracked `app/.env`, an ignored key or
a scratch file never reaches a build context (replica/build_context.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica.build_context import export_context
from tests.helpers import ROOT, git_checkout, private_key_pem


def checkout(tmp_path: Path) -> Path:
    files = ("app/manage.py", "compose/python/Dockerfile", ".dockerignore")
    return git_checkout(tmp_path / "checkout", files, "*.key\ncompose/certs/*\n")


def test_an_image_context_holds_only_what_git_tracks(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    (repo / "app" / ".env").write_text("DJANGO_SECRET_KEY=local-only\n")  # untracked
    (repo / "app" / "deploy.key").write_text(private_key_pem())  # ignored
    (repo / "app" / "scratch.py").write_text("print('mine')\n")  # untracked
    (repo / "compose" / "certs").mkdir()
    (repo / "compose" / "certs" / "extra-ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (repo / "app" / "manage.py").write_text("# edited, not committed\n")
    dest = tmp_path / "context"
    dest.mkdir()
    export_context(repo, dest)
    found = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert found == [
        ".dockerignore", ".gitignore", "app/manage.py",
        "compose/certs/extra-ca.crt",  # the proxy's CA the script writes: the one addition
        "compose/python/Dockerfile",
    ]  # fmt: skip
    assert (dest / "app" / "manage.py").read_text() == "# edited, not committed\n"
    with pytest.raises(SystemExit, match="not empty"):
        export_context(repo, dest)


def test_build_images_builds_from_that_context() -> None:
    script = (ROOT / "scripts" / "build-images").read_text()
    assert 'python3 -m replica.build_context "$CONTEXT"' in script
    compose = [line for line in script.splitlines() if line.startswith("compose=(")]
    assert compose == [
        'compose=(docker compose -f "$CONTEXT/compose/compose.yaml" '
        '-f "$CONTEXT/compose/fleet.yaml")'
    ]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".local", "**/.env", "**/.env.*", "**/*.key", "**/*.pem"} <= set(ignored)
