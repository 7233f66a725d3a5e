"""The app as processes: manage.py check --deploy, configuration errors, the image
build's collectstatic, and start.sh (migrate + gunicorn) serving real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.app.support import APP_DIR, BASE_ENV, HOST, start_sh_env, wait_http
from tests.conftest import free_port
from tests.helpers import ROOT


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP_DIR / "manage.py"), *args],
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_deploy_is_clean_with_production_values(app_environment: dict[str, str]) -> None:
    production = {
        **app_environment,
        "DJANGO_ALLOWED_HOSTS": "jobtory.example.com,www.jobtory.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://jobtory.example.com,https://www.jobtory.example.com",
        "FRONTEND_BASE_URL": "https://jobtory.example.com",
        "GOOGLE_REDIRECT_URI": "https://jobtory.example.com/auth/google/callback",
        "GOOGLE_OIDC_ISSUER": "https://accounts.google.com",
    }
    result = manage(production, "check", "--deploy", "--fail-level", "DEBUG")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("jobtory_env", "strict"),
    [("local", False), ("prod", True), ("production", True), (None, True)],
)
def test_only_local_may_use_an_http_oidc_provider(
    app_environment: dict[str, str], jobtory_env: str | None, strict: bool
) -> None:
    env = {k: v for k, v in app_environment.items() if k != "JOBTORY_ENV"}
    if jobtory_env is not None:
        env["JOBTORY_ENV"] = jobtory_env
    code = "from django.conf import settings; print(settings.OIDC_REQUIRE_HTTPS)"
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(strict)


def test_check_deploy_is_clean_with_the_prod_spec_and_generated_secrets() -> None:
    """Exactly what a prod host gets from SSM: the spec's derived and own values for
    `prod`, secrets as the deployer generates them, DB_HOST as apply fills it in."""
    from jobtory_stack.aws.secrets import new_value
    from jobtory_stack.spec.derived import derive
    from jobtory_stack.spec.loader import load_stack

    prod = derive(load_stack(ROOT / "stack.toml").env("prod"))
    env = {
        **prod.parameters,
        **{name: new_value(name) for name in prod.secret_names},
        "DB_HOST": "jobtory-prod-db.abcdefghijkl.ap-northeast-2.rds.amazonaws.com",
    }
    assert env["JOBTORY_ENV"] == "prod" and "DJANGO_DEBUG" not in env
    result = manage(env, "check", "--deploy", "--fail-level", "DEBUG")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # security.W021 (HSTS preload) is the one silenced check: docs/security.md says why.
    assert "System check identified no issues (1 silenced)." in result.stdout, output
    assert "WARNING" not in output and "W0" not in output
    for name in prod.secret_names:
        assert env[name] not in output


def test_check_deploy_flags_debug(app_environment: dict[str, str]) -> None:
    result = manage({**app_environment, "DJANGO_DEBUG": "true"}, "check", "--deploy")
    assert "security.W018" in result.stdout + result.stderr  # DEBUG on in deployment


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DB_HOST", "GOOGLE_CLIENT_ID"])
def test_missing_variable_is_named(app_environment: dict[str, str], missing: str) -> None:
    env = {k: v for k, v in app_environment.items() if k != missing}
    result = manage(env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"Environment variable {missing} is required" in result.stderr


def test_origins_need_a_scheme(app_environment: dict[str, str]) -> None:
    env = {**app_environment, "DJANGO_CSRF_TRUSTED_ORIGINS": "jobtory.example.com"}
    result = manage(env, "check")
    assert result.returncode != 0
    assert "DJANGO_CSRF_TRUSTED_ORIGINS" in result.stderr
    assert "needs a scheme" in result.stderr


def test_collectstatic_at_image_build_needs_no_configuration() -> None:
    """The image builder runs collectstatic with no SSM access: DJANGO_BUILD_ONLY=1."""
    with tempfile.TemporaryDirectory() as root:
        env = {"DJANGO_BUILD_ONLY": "1", "DJANGO_STATIC_ROOT": root}
        result = manage(env, "collectstatic", "--noinput")
        assert result.returncode == 0, result.stderr
        assert (Path(root) / "staticfiles.json").exists()
        assert list(Path(root).glob("admin/css/base.*.css"))
        # ... and that mode can never serve requests.
        serve = subprocess.run(
            [sys.executable, "-c", "import config.wsgi"],
            cwd=APP_DIR,
            env={**BASE_ENV, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert serve.returncode != 0
        assert "DJANGO_BUILD_ONLY" in serve.stderr


def test_start_sh_migrates_and_serves_with_gunicorn(app_environment: dict[str, str]) -> None:
    port = free_port()
    env = {**start_sh_env(app_environment, port), "DJANGO_BUILD_ONLY": ""}
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["sh", str(APP_DIR / "start.sh")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/healthz", proc, "gunicorn (start.sh)", timeout=30)
            # ALB-style health check: private IP as Host, plain HTTP.
            health = httpx.get(f"{url}/healthz", headers={"Host": "10.0.3.7"})
            assert (health.status_code, health.text) == (200, "ok")
            ready = httpx.get(f"{url}/readyz", headers={"Host": "10.0.3.7"})
            assert ready.status_code == 200, ready.text
            assert httpx.get(f"{url}/api/version", headers={"Host": "10.0.3.7"}).status_code == 400
            # What Caddy sends.
            proxied = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Real-IP": "198.51.100.20"}
            info = httpx.get(f"{url}/api/request-info", headers=proxied).json()
            assert info["is_secure"] is True and info["scheme"] == "https"
            assert info["client_ip"] == "198.51.100.20"
            assert info["remote_addr"] == "127.0.0.1"
            login = httpx.get(
                f"{url}/auth/google/callback?code=SECRET-CODE-123&state=s", headers=proxied
            )
            assert login.status_code == 400
            listed = httpx.get(f"{url}/api/problems/?limit=5", headers=proxied)
            assert listed.status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful stop
            code = proc.wait(timeout=20)
        out.seek(0)
        log = out.read().decode(errors="replace")
    assert code == 0, log
    assert "No migrations to apply" in log or "Applying" in log
    assert '"GET /auth/google/callback HTTP/1.1" 400' in log
    assert "SECRET-CODE-123" not in log  # OAuth codes never reach the access log
    assert '"GET /api/problems/?limit=5 HTTP/1.1" 200' in log
    assert "198.51.100.20 127.0.0.1" in log  # client IP first, then the proxy
