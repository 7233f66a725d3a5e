"""The templates: one place (jobtory_stack/templates/), one format (Jinja2), one helper."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from jobtory_stack.hosts.release import source_files
from jobtory_stack.hosts.settings import HostSettings, Manifest
from jobtory_stack.render.templates import TEMPLATES_DIR, render_template
from tests.helpers import ROOT
from tests.unit.test_db_ca import spec_with_ca_bundle

UNITS = sorted(p.name for p in (TEMPLATES_DIR / "systemd").glob("*.j2"))


@pytest.fixture
def settings(tmp_path: Path) -> HostSettings:
    Manifest("v1", "src-v1.tar.gz", "0" * 64, "wheels-abc.tar", "abc").save(tmp_path)
    spec = spec_with_ca_bundle(tmp_path)
    data = {"jobtory_env": "prod", "jobtory_version": "v1", "jobtory_artifacts": str(tmp_path)}
    data["jobtory_spec"] = str(spec)
    return HostSettings.from_host_data(data, deploy_dir=ROOT / "pyinfra")


def test_every_template_is_in_the_package_and_nowhere_else() -> None:
    names = {p.relative_to(TEMPLATES_DIR).as_posix() for p in TEMPLATES_DIR.rglob("*.j2")}
    assert {"Caddyfile.j2", "user-data.sh.j2", "systemd/jobtory-caddy.service.j2"} <= names
    assert len(UNITS) == 4
    assert not (ROOT / "caddy").exists() and not (ROOT / "pyinfra" / "templates").exists()
    # the host release carries them (pyinfra/tasks/services.py reads them from there)
    shipped = {name for name, _ in source_files(ROOT)}
    assert {f"jobtory_stack/templates/{n}" for n in names} <= shipped


@pytest.mark.parametrize("unit", UNITS)
def test_the_host_deploy_renders_each_unit_with_the_helper(
    unit: str, settings: HostSettings
) -> None:
    """The units the host deploy writes (HostSettings.managed_files, which
    pyinfra/tasks/services.py and the fingerprint use) come from render_template."""
    text = render_template(f"systemd/{unit}", **settings.template_data)
    written = settings.managed_files[unit.removesuffix(".j2")]
    assert written.content == text.encode()
    assert written.dest == f"/etc/systemd/system/{unit.removesuffix('.j2')}"
    assert "{{" not in text and "}}" not in text
    assert text.startswith("# Managed by the jobtory pyinfra deploy")


def test_a_missing_value_is_an_error_not_an_empty_string(settings: HostSettings) -> None:
    values = dict(settings.template_data)
    del values["env_file"]
    with pytest.raises(jinja2.UndefinedError, match="env_file"):
        render_template("systemd/jobtory-gunicorn.service.j2", **values)


def test_values_are_not_html_escaped_and_the_trailing_newline_stays() -> None:
    text = render_template(
        "user-data.sh.j2",
        env_name="a&b",
        version="v1",
        manifest_sha256="",
        bucket="b",
        region="r",
        aws_env="K=<v>",
        fetch_program="",
    )
    assert "ENV_NAME='a&b'" in text and "AWS_ENV='K=<v>'" in text  # shquote, no &amp;
    assert text.endswith('echo "jobtory: bootstrap of $VERSION done"\n')
