"""deploy.py as a user runs it: a subprocess, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def deploy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_validate_shipped_spec() -> None:
    result = deploy("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["local:", "ok", "staging:", "ok", "prod:", "ok"]


def test_oauth_prod() -> None:
    result = deploy("oauth", "--env", "prod")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    origins = lines[lines.index("Authorized JavaScript origins:") + 1 :][:2]
    assert origins == ["https://jobtory.com", "https://www.jobtory.com"]
    redirects = lines[lines.index("Authorized redirect URIs:") + 1 :]
    assert redirects == ["https://jobtory.com/auth/google/callback"]


def test_show_json_names_secrets_only() -> None:
    result = deploy("show", "--env", "prod", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    derived = config["derived"]
    assert derived["frontend_base_url"] == "https://jobtory.com"
    assert derived["rds_parameter_group_family"] == "postgres17"
    assert "/jobtory/prod/DJANGO_SECRET_KEY (SecureString)" in derived["ssm_secrets"]


def test_show_text_without_tty() -> None:
    result = deploy("show", "--env", "local")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert "google_redirect_uri: https://jobtory.localhost:8443/auth/google/callback" in (
        result.stdout
    )


def test_render_postgres_conf() -> None:
    result = deploy("render", "postgres-conf", "--env", "local")
    assert result.returncode == 0, result.stderr
    assert "timezone = 'Asia/Seoul'" in result.stdout.splitlines()
    assert "max_connections = 200" in result.stdout.splitlines()


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        ("[stack\n", ("validate",), "not valid TOML"),
        (None, ("validate",), "file not found"),
        ("COPY", ("show", "--env", "qa"), "environments.qa: unknown environment"),
        ("COPY", ("oauth", "--env", "Prod"), "environments.Prod: unknown environment"),
    ],
)
def test_errors_are_one_line_exit_1(
    tmp_path: Path, content: str | None, args: tuple[str, ...], fragment: str
) -> None:
    spec = tmp_path / "stack.toml"
    if content == "COPY":
        spec.write_text((ROOT / "stack.toml").read_text())
    elif content is not None:
        spec.write_text(content)
    result = deploy(*args, "--spec", str(spec))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and fragment in result.stderr


def test_invalid_spec_lists_every_problem(tmp_path: Path) -> None:
    text = (
        (ROOT / "stack.toml")
        .read_text()
        .replace("target_cpu_percent = 50", "target_cpu_percent = 500")
    )
    text = text.replace('matcher = "200"', 'matcher = "ok"')
    spec = tmp_path / "stack.toml"
    spec.write_text(text)
    result = deploy("validate", "--spec", str(spec))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, "a shared-section problem is reported once, not once per env"
    assert "asg.target_cpu_percent" in lines[1]
    assert "alb.health_check.matcher" in lines[0]


@pytest.mark.parametrize("args", [(), ("bogus",), ("show", "--no-such-flag")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = deploy(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_spec_commands_do_not_import_the_aws_sdk() -> None:
    """validate/show/oauth build only their own parser: no boto3 (about half a second)."""
    probe = (
        "import sys; from jobtory_stack.cli import main; code = main(['validate']); "
        "print(code, 'boto3' in sys.modules, 'pyinfra' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines()[-1] == "0 False False", result.stdout + result.stderr
