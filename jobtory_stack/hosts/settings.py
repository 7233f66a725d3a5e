"""What a host deploy needs, typed: `DeployOptions` (what the operator asks for; every
default is defined once, in spec.constants) and `HostSettings` (what pyinfra/deploy.py
renders for one host, from the spec and the host's pyinfra data).

Standard library and the spec only: the CLI imports this without pyinfra or boto3.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from jobtory_stack.errors import HostsError
from jobtory_stack.render.caddyfile import Mode, render_caddyfile
from jobtory_stack.render.sites import host_site
from jobtory_stack.render.templates import render_template
from jobtory_stack.spec.constants import (
    CADDY_MODES,
    HOST_BIND,
    HOST_CANDIDATE_BIND,
    HOST_DB_CA,
    HOST_DB_CA_DIR,
    HOST_ETC,
    HOST_ROOT,
    KEEP_RELEASES,
    LOCK_STALE_AFTER,
    RDS_CA_BUNDLE_URL,
    READY_TIMEOUT,
    VERSION_RE,
)
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment

REPO = Path(__file__).resolve().parents[2]
LOCAL_DIR = REPO / ".local"
ARTIFACTS_DIR = LOCAL_DIR / "releases"
LOG_DIR = LOCAL_DIR / "logs"


@dataclass(frozen=True)
class DeployOptions:
    """One `deploy.py hosts` run, as the operator asked for it."""

    spec: Path
    version: str | None = None  # default: a digest of the sources
    source: Path | None = None  # default: this checkout
    keep: int = KEEP_RELEASES
    only: tuple[str, ...] = ()
    lock_timeout: float = LOCK_STALE_AFTER
    ready_timeout: float = READY_TIMEOUT
    caddy_mode: Mode | None = None  # default: the spec's caddy.mode
    # the release is published (hosts.launch.prepare_release): the deploy moves the Auto
    # Scaling group's launch template to it once it holds the deploy lock
    launch_template: bool = False


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
class ManagedFile:
    """A file the deploy writes whole on a host (not the env file: the host renders it)."""

    dest: str
    content: bytes
    mode: str = "644"


# The units whose state is part of a host's fingerprint: running and enabled.
FINGERPRINT_UNITS = ("jobtory-gunicorn.socket", "jobtory-gunicorn.service", "jobtory-caddy.service")
UNITS = (
    "jobtory-gunicorn.socket",
    "jobtory-gunicorn.service",
    "jobtory-candidate@.service",
    "jobtory-caddy.service",
)


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
    db_ca_local: Path | None = None  # rds.ca_bundle; None: the host gets its CA otherwise
    aws_env: dict[str, str] = field(default_factory=dict)
    keep_releases: int = KEEP_RELEASES
    root: str = HOST_ROOT
    etc: str = HOST_ETC
    app_user: str = "jobtory"
    web_user: str = "jobtory-web"
    bind: str = HOST_BIND
    candidate_bind: str = HOST_CANDIDATE_BIND
    workers: int = 2
    # sha256 of the env file the deployer rendered from SSM ("": the host reads SSM itself)
    env_sha256: str = ""
    db_ca: str = HOST_DB_CA  # DB_SSLROOTCERT (spec.derived)
    db_ca_dir: str = HOST_DB_CA_DIR

    @classmethod
    def from_host_data(cls, data: Any, deploy_dir: Path) -> HostSettings:
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
        mode = cast(Mode, mode)
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
            db_ca_local=db_ca_bundle(env, spec),
            aws_env=parse_kv(_data_get(data, "jobtory_aws_env", {})),
            keep_releases=int(_data_get(data, "jobtory_keep_releases", KEEP_RELEASES)),
            workers=int(_data_get(data, "jobtory_workers", 2)),
            env_sha256=str(_data_get(data, "jobtory_env_sha256", "") or ""),
        )
        return settings.with_caddyfile(host_caddyfile(env, settings))

    def with_caddyfile(self, text: str) -> HostSettings:
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
    def activate_source(self) -> Path:
        return self.deploy_dir / "files" / "activate.sh"

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

    @cached_property
    def managed_files(self) -> dict[str, ManagedFile]:
        """Every file the deploy writes whole, by name: the tasks write them from here, and
        the fingerprint hashes the same bytes (rendered once per settings)."""
        files = {
            "aws settings": ManagedFile(self.aws_env_file, self.aws_env_text.encode()),
            "activate script": ManagedFile(
                self.activate_script,
                (self.deploy_dir / "files" / "activate.sh").read_bytes(),
                "755",
            ),
            "Caddyfile": ManagedFile(self.caddyfile, self.caddyfile_text.encode()),
        }
        if self.db_ca_local is not None:
            files["database CA bundle"] = ManagedFile(self.db_ca, self.db_ca_local.read_bytes())
        for unit in UNITS:
            text = render_template(f"systemd/{unit}.j2", **self.template_data)
            files[unit] = ManagedFile(f"/etc/systemd/system/{unit}", text.encode())
        return files

    def fingerprint(self) -> list[str]:
        """What a host in sync with this deploy reports (jobtory_facts.HostFingerprint):
        the current release, each managed file's mode, owner and sha256, the env file's
        (the hash the deployer rendered from SSM), and the services running and enabled.
        Empty when the deployer sent no env hash (user data): then there is no shortcut."""
        if not self.env_sha256:
            return []
        lines = [f"current={self.version}"]
        files = sorted(self.managed_files.values(), key=lambda f: f.dest)
        lines += [f"{f.dest} {f.mode} root {hashlib.sha256(f.content).hexdigest()}" for f in files]
        lines.append(f"{self.env_file} 600 {self.app_user} {self.env_sha256}")
        lines += [f"{unit} active enabled" for unit in FINGERPRINT_UNITS]
        return lines

    def fingerprint_query(self) -> dict[str, Any]:
        """The arguments of the HostFingerprint fact that answers `fingerprint()`."""
        paths = [*sorted(f.dest for f in self.managed_files.values()), self.env_file]
        return {"root": self.root, "paths": paths, "units": list(FINGERPRINT_UNITS)}

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


def host_caddyfile(env: Environment, settings: HostSettings) -> str:
    """The Caddyfile a host runs, in the mode the deploy asks for (default: the spec's)."""
    site = host_site(env, settings.caddy_mode, settings.bind, settings.static_root)
    return render_caddyfile(site)


def db_ca_bundle(env: Environment, spec: Path) -> Path | None:
    """The database CA bundle the spec names (rds.ca_bundle, relative to the spec), checked
    before a deploy changes anything: a host without it cannot verify the database, so
    its app could not connect. None when the env names none (`local`: the replica mounts
    its db's own CA at the same path)."""
    if env.rds.ca_bundle is None:
        return None
    path = spec.resolve().parent / env.rds.ca_bundle
    url = RDS_CA_BUNDLE_URL.format(region=env.region)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not a PEM text file"
        raise HostsError(
            f"rds.ca_bundle: {path}: {why}; download {url} there (docs/security.md), "
            "commit it and run again"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text or "PRIVATE KEY" in text:
        raise HostsError(
            f"rds.ca_bundle: {path} is not a bundle of PEM certificates; download {url} again"
        )
    return path


def check_version(version: str) -> str:
    """A release version as given; it names a directory and a systemd unit instance."""
    if not VERSION_RE.match(version):
        raise HostsError(
            f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(it names a directory and a systemd unit instance)"
        )
    return version
