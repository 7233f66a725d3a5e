"""A release: the sources (what ships to a host) and the hosts' wheelhouse, built on the
controller so that hosts need no index and no git. Content-addressed: the same sources
give the same version and the same bytes, so a redeploy uploads nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.requirements import (
    WHEEL_PLATFORMS,
    host_python,
    runtime_requirements,
    wheels_key,
)
from jobtory_stack.hosts.settings import ARTIFACTS_DIR, REPO, Manifest, check_version
from jobtory_stack.spec.constants import RELEASE_MANIFEST_FORMAT, RELEASE_OBJECT_KEY

# rds-ca/: the database CA bundles the spec names (rds.ca_bundle), for hosts booted
# from a release (user data) as for those deployed over SSH
SOURCE_PARTS = ("app", "jobtory_stack", "pyinfra", "stack.toml", "deploy.py", "rds-ca")


SKIP_NAMES = frozenset(
    {"__pycache__", "staticfiles", "node_modules", ".pytest_cache", ".mypy_cache"}
)


SKIP_SUFFIXES = (".pyc", ".pyo", ".sqlite3", ".log")


def tracked_files(source: Path) -> list[str]:
    """What git tracks in the checkout `source` (repo-relative, sorted): untracked and
    ignored files (a local `app/.env`, a key, a scratch file) never reach a release."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), "ls-files", "-z", "--cached", "--", *SOURCE_PARTS],
            capture_output=True,
            check=False,
        )
    except OSError as exc:
        raise HostsError(f"git is needed to list the release's files ({exc})") from None
    if proc.returncode != 0:
        raise HostsError(
            f"{source}: not a git checkout ({proc.stderr.decode(errors='replace').strip()[:200]});"
            " --source must be a checkout of this repo"
        )
    return sorted(name for name in proc.stdout.decode().split("\0") if name)


def source_files(source: Path) -> Iterator[tuple[str, Path]]:
    """What a release ships to a host: (name in the release, file) for the files of
    SOURCE_PARTS that git tracks in the checkout `source`, as they are in its work tree;
    the replica's tooling (replica/) is not among them."""
    names = tracked_files(source)
    for part in ("app", "jobtory_stack"):
        if not any(name.startswith(f"{part}/") for name in names):
            raise HostsError(f"{source / part}: missing; --source must be a checkout of this repo")
    for name in names:
        rel = Path(name)
        if any(p in SKIP_NAMES for p in rel.parts) or rel.suffix in SKIP_SUFFIXES:
            continue
        path = source / rel
        if path.is_file() and not path.is_symlink():  # a tracked file deleted: not shipped
            yield name, path


def deterministic_tar(dest: Path, members: Sequence[tuple[str, bytes, int]], compress: bool) -> str:
    """Write a tar whose bytes depend only on the members (sorted, mtime 0, root-owned);
    returns its sha256. The same content gives the same file, so pyinfra uploads nothing."""
    payload = tar_bytes(members, compress)
    write_atomic(dest, payload)
    return hashlib.sha256(payload).hexdigest()


def write_atomic(dest: Path, payload: bytes) -> None:
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(dest)


def tar_bytes(members: Sequence[tuple[str, bytes, int]], compress: bool) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    payload = raw.getvalue()
    if compress:
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
            gz.write(payload)
        payload = out.getvalue()
    return payload


def _pip_command() -> list[str]:
    configured = os.environ.get("JOBTORY_PIP")
    if configured:
        return shlex.split(configured)
    for python in (sys.executable, shutil.which("python3") or "python3"):
        probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [python, "-m", "pip"]
    raise HostsError("no pip to download wheels with: set JOBTORY_PIP (e.g. 'python3 -m pip')")


def build_wheelhouse(requirements: str, host_requirements: str, out: Path) -> tuple[str, str]:
    """Download every wheel the hosts need (for the hosts' Python and platform) once;
    returns (archive name, id). Cached by content in `out`."""
    python = host_python()
    key = wheels_key(requirements, host_requirements)
    name = f"wheels-{key}.tar"
    if (out / name).exists():
        return name, key
    abi = "cp" + python.replace(".", "")
    env = dict(os.environ)
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():  # a TLS-intercepting proxy's CA is in the host's bundle
        env.setdefault("PIP_CERT", str(bundle))
    with tempfile.TemporaryDirectory(prefix="jobtory-wheels-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirements)
        hostreq = Path(tmp) / "requirements-host.txt"
        hostreq.write_text(host_requirements)
        wheels = Path(tmp) / "wheels"
        base = [
            *_pip_command(),
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            abi,
            "--abi",
            "abi3",
            "--abi",
            "none",
            *[arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)],
            "--platform",
            "any",
            "--dest",
            str(wheels),
        ]
        for reqfile in (req, hostreq):
            proc = subprocess.run(
                [*base, "-r", str(reqfile)], env=env, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise HostsError(f"pip download for the hosts' wheelhouse failed: {tail}")
        members = [(p.name, p.read_bytes(), 0o644) for p in sorted(wheels.glob("*.whl"))]
        deterministic_tar(out / name, members, compress=False)
    return name, key


def source_members(
    source: Path, requirements: str, host_requirements: str
) -> list[tuple[str, bytes, int]]:
    """The code object's members: the shipped files and the locked requirements."""
    members: list[tuple[str, bytes, int]] = []
    for name, path in source_files(source):
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        members.append((name, path.read_bytes(), mode))
    members.append(("requirements.txt", requirements.encode(), 0o644))
    members.append(("requirements-host.txt", host_requirements.encode(), 0o644))
    return members


def source_digest(source: Path) -> str:
    h = hashlib.sha256()
    for name, path in source_files(source):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def default_version(source: Path) -> str:
    """Content-addressed: the same sources give the same version (a redeploy is a no-op)."""
    return "r" + source_digest(source)[:10]


def build_release(
    version: str, source: Path = REPO, out: Path = ARTIFACTS_DIR, repo: Path = REPO
) -> Manifest:
    """src-<version>.tar.gz (sources + locked requirements) + the shared wheelhouse.

    Versions are immutable: a version already built is reused as it is (hosts that have
    it keep it), so shipping changed sources takes a new version (the default version is
    a digest of the sources, so it changes by itself)."""
    check_version(version)
    out.mkdir(parents=True, exist_ok=True)
    try:
        existing = Manifest.load(out, version)
    except HostsError:
        existing = None
    if existing and (out / existing.source).exists() and (out / existing.wheels).exists():
        return existing
    requirements, host_requirements = runtime_requirements(repo)
    wheels, wheels_id = build_wheelhouse(requirements, host_requirements, out)
    members = source_members(source, requirements, host_requirements)
    src = f"src-{version}.tar.gz"
    digest = deterministic_tar(out / src, members, compress=True)
    manifest = Manifest(version, src, digest, wheels, wheels_id)
    manifest.save(out)
    return manifest


# ---- a named release, for the store (`deploy.py release build`) ----------------------------

# What the release is built from besides the shipped parts: a change there is a dirty tree
RELEASE_INPUTS = ("uv.lock", "pyproject.toml")


def git(source: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise HostsError(f"git is needed to build a release ({exc})") from None
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or ["failed"]
        raise HostsError(f"{source}: git {args[0]}: {why[0][:200]}; --source must be a checkout")
    return proc.stdout


def git_state(source: Path) -> tuple[str, list[str]]:
    """The commit checked out in `source`, and the tracked files of the release that
    differ from it (staged or not; untracked files never ship, so they do not count)."""
    commit = git(source, "rev-parse", "--verify", "HEAD").strip()
    status = git(
        source, "status", "--porcelain=v1", "-z", "--untracked-files=no", "--",
        *SOURCE_PARTS, *RELEASE_INPUTS,
    )  # fmt: skip
    changed = [entry[3:] for entry in status.split("\0") if len(entry) > 3 and entry[2] == " "]
    return commit, sorted(changed)


@dataclass(frozen=True)
class Release:
    """A named release: its local artifacts (what `deploy.py hosts --version NAME` ships)
    and the manifest the store holds, exactly as published."""

    name: str
    commit: str
    dirty: bool
    artifacts: Manifest
    manifest: bytes  # JSON: the key, size and sha256 of every object
    out: Path

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def objects(self) -> list[dict[str, Any]]:
        return list(json.loads(self.manifest)["objects"])


def release_name(commit: str, code_sha256: str, dirty: bool) -> str:
    """<commit>-<digest of the code object>[-dirty]: where it came from, and what it is."""
    return f"{commit[:10]}-{code_sha256[:12]}" + ("-dirty" if dirty else "")


def store_object(role: str, path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    return {
        "role": role,
        "file": path.name,
        "key": RELEASE_OBJECT_KEY.format(sha256=sha),
        "size": path.stat().st_size,
        "sha256": sha,
    }


def manifest_bytes(
    artifacts: Manifest, commit: str, dirty: bool, objects: list[dict[str, Any]]
) -> bytes:
    """Deterministic (no date in it): the same release gives the same bytes and sha256, so
    a second publish finds it in the store. `wheels_id` names the hosts' venv."""
    document = {
        "format": RELEASE_MANIFEST_FORMAT,
        "release": artifacts.version,
        "commit": commit,
        "dirty": dirty,
        "wheels_id": artifacts.wheels_id,
        "objects": objects,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def build_named(
    source: Path = REPO, out: Path = ARTIFACTS_DIR, repo: Path = REPO, allow_dirty: bool = False
) -> Release:
    """The release of what git tracks in `source`: the code object (sources + locked
    requirements) and the wheelhouse, named by the commit and the code's digest. A tree
    whose shipped files differ from the commit is refused (before anything is written)
    unless `allow_dirty`, and the release is then named dirty."""
    commit, changed = git_state(source)
    if changed and not allow_dirty:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if changed[5:] else "")
        raise HostsError(
            f"the work tree differs from commit {commit[:10]} in {shown}: commit (or stash) "
            "them so the release is that commit, or pass --allow-dirty (the release is then "
            "named ...-dirty)"
        )
    requirements, host_requirements = runtime_requirements(repo)
    code = tar_bytes(source_members(source, requirements, host_requirements), compress=True)
    name = check_version(release_name(commit, hashlib.sha256(code).hexdigest(), bool(changed)))
    out.mkdir(parents=True, exist_ok=True)
    wheels, wheels_id = build_wheelhouse(requirements, host_requirements, out)
    src = f"src-{name}.tar.gz"
    write_atomic(out / src, code)
    artifacts = Manifest(name, src, hashlib.sha256(code).hexdigest(), wheels, wheels_id)
    artifacts.save(out)
    objects = [store_object("code", out / src), store_object("wheels", out / wheels)]
    manifest = manifest_bytes(artifacts, commit, bool(changed), objects)
    write_atomic(out / f"manifest-{name}.json", manifest)
    return Release(name, commit, bool(changed), artifacts, manifest, out)
