"""A release: the sources (what ships to a host) and the hosts' wheelhouse, built on the
controller so that hosts need no index and no git. Content-addressed: the same sources
give the same version and the same bytes, so a redeploy uploads nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts.requirements import (
    WHEEL_PLATFORMS,
    host_python,
    runtime_requirements,
    wheels_key,
)
from jobtory_stack.hosts.settings import ARTIFACTS_DIR, REPO, Manifest, check_version

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
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(dest)
    return hashlib.sha256(payload).hexdigest()


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
    members: list[tuple[str, bytes, int]] = []
    for name, path in source_files(source):
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        members.append((name, path.read_bytes(), mode))
    members.append(("requirements.txt", requirements.encode(), 0o644))
    members.append(("requirements-host.txt", host_requirements.encode(), 0o644))
    src = f"src-{version}.tar.gz"
    digest = deterministic_tar(out / src, members, compress=True)
    manifest = Manifest(version, src, digest, wheels, wheels_id)
    manifest.save(out)
    return manifest
