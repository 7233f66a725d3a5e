"""The hosts deploy installs the database CA bundle the spec names (rds.ca_bundle), and
refuses before any change when it is missing: the spec check cannot see files (specs
are checked where their files are not), so the deploy does."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts import rolling
from jobtory_stack.hosts.settings import DeployOptions, HostSettings, Manifest, db_ca_bundle
from jobtory_stack.spec.constants import HOST_DB_CA, HOST_DB_CA_DIR
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT, private_key_pem

BUNDLE = "rds-ca/ap-northeast-2-bundle.pem"  # what the shipped spec names
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def spec_with_ca_bundle(tmp_path: Path, content: str | None = PEM) -> Path:
    """A copy of the shipped spec, with (content) or without (None) its CA bundle."""
    spec = tmp_path / "stack.toml"
    shutil.copy(ROOT / "stack.toml", spec)
    if content is not None:
        (tmp_path / BUNDLE).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / BUNDLE).write_text(content)
    return spec


def host_data(tmp_path: Path, spec: Path, env: str = "prod") -> dict[str, str]:
    Manifest("v1", "src-v1.tar.gz", "0" * 64, "wheels-abc.tar", "abc").save(tmp_path)
    return {
        "jobtory_env": env,
        "jobtory_version": "v1",
        "jobtory_artifacts": str(tmp_path),
        "jobtory_spec": str(spec),
    }


def test_the_host_gets_the_bundle_the_spec_names(tmp_path: Path) -> None:
    spec = spec_with_ca_bundle(tmp_path)
    s = HostSettings.from_host_data(host_data(tmp_path, spec), deploy_dir=ROOT / "pyinfra")
    assert s.db_ca_local == tmp_path / BUNDLE
    assert s.db_ca == "/etc/jobtory/db-ca/ca.pem"  # DB_SSLROOTCERT (spec.derived)
    bundle = s.managed_files["database CA bundle"]  # what pyinfra/tasks/base.py writes
    assert bundle.dest == s.db_ca and bundle.content == (tmp_path / BUNDLE).read_bytes()
    # local names none: the replica mounts its db's own CA at that path
    local = HostSettings.from_host_data(
        host_data(tmp_path, spec, "local"), deploy_dir=ROOT / "pyinfra"
    )
    assert local.db_ca_local is None
    assert "database CA bundle" not in local.managed_files


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "No such file or directory; download https://truststore.pki.rds.amazonaws.com/"
         "ap-northeast-2/ap-northeast-2-bundle.pem there"),
        ("not a certificate\n", "is not a bundle of PEM certificates"),
        (PEM + private_key_pem(), "is not a bundle of PEM certificates"),
    ],
    ids=["missing", "not-a-certificate", "with-a-private-key"],  # the key is new each run
)  # fmt: skip
def test_a_host_deploy_refuses_without_a_usable_bundle(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    spec = spec_with_ca_bundle(tmp_path, content)
    with pytest.raises(HostsError, match=r"^rds\.ca_bundle: ") as caught:
        HostSettings.from_host_data(host_data(tmp_path, spec), deploy_dir=ROOT / "pyinfra")
    assert expected in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_deploy_hosts_refuses_before_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deploy.py hosts` checks the bundle first: no AWS call (the lock), no build."""
    calls: list[str] = []

    def no_aws(*args: Any, **kwargs: Any) -> Any:
        calls.append("client_for")
        raise AssertionError("an AWS client before the CA bundle check")

    monkeypatch.setattr(rolling, "client_for", no_aws)
    monkeypatch.setattr(rolling, "build_release", no_aws)
    spec = spec_with_ca_bundle(tmp_path, None)
    env = load_stack(spec).env("prod")
    with pytest.raises(HostsError, match=r"^rds\.ca_bundle: .*No such file"):
        rolling.deploy(env, DeployOptions(spec=spec, version="v1"), print)
    assert calls == []
    assert db_ca_bundle(load_stack(spec).env("local"), spec) is None


def mounts(compose: dict[str, Any], service: str) -> list[str]:
    return [v for v in compose["services"][service].get("volumes", []) if isinstance(v, str)]


def test_the_replica_verifies_its_db_as_production_does() -> None:
    """The replica's app and the fleet's hosts find the db's local CA where the derived
    DB_SSLROOTCERT points, read-only; the volume with the server's key is the db's only."""
    compose = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
    fleet = yaml.safe_load((ROOT / "compose" / "fleet.yaml").read_text())
    assert f"{HOST_DB_CA_DIR}/ca.pem" == HOST_DB_CA
    assert "db-ca:/var/lib/postgresql/ca" in mounts(compose, "db")
    for name, doc in (("app", compose), ("ec2-1", fleet), ("ec2-2", fleet)):
        assert f"db-ca:{HOST_DB_CA_DIR}:ro" in mounts(doc, name), name
    holders = {
        name
        for doc in (compose, fleet)
        for name in doc["services"]
        if any(m.startswith("db-tls:") for m in mounts(doc, name))
    }
    assert holders == {"db"}
    entrypoint = (ROOT / "compose" / "db" / "entrypoint.sh").read_text()
    assert 'install -m 0644 "$TLS_DIR/ca.crt" "$CA_OUT/ca.pem.new"' in entrypoint
