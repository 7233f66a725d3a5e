"""`deploy.py params`: sync / get / set / diff against a real moto server."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobtory_stack.cli import main
from tests.helpers import ROOT

pytestmark = pytest.mark.aws

SPEC = str(ROOT / "stack.toml")
SECRETS = ("DJANGO_SECRET_KEY", "DB_PASSWORD", "GOOGLE_CLIENT_SECRET")  # the app's


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["params", *argv[:1], "--spec", SPEC, *argv[1:]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def all_params(prefix: str) -> dict[str, tuple[str, str]]:
    client = boto3.client("ssm", region_name="ap-northeast-2")
    found = {}
    for page in client.get_paginator("get_parameters_by_path").paginate(
        Path=prefix, Recursive=True, WithDecryption=True
    ):
        for p in page["Parameters"]:
            found[p["Name"][len(prefix) :]] = (p["Value"], p["Type"])
    return found


def test_sync_local_with_secrets_file(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets_file = tmp_path / "secrets.json"
    code, out, _ = run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    assert code == 0
    params = all_params("/jobtory/local/")
    assert params["DB_HOST"] == ("db", "String")
    assert params["FRONTEND_BASE_URL"] == ("https://jobtory.localhost:8443", "String")
    stored = json.loads(secrets_file.read_text())
    assert sorted(stored) == sorted(SECRETS)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    for name in SECRETS:
        assert params[name] == (stored[name], "SecureString")
        assert len(stored[name]) >= 40
        assert stored[name] not in out
    assert len(stored["DJANGO_SECRET_KEY"]) >= 50  # Django's check --deploy wants 50+
    assert "DUCKDNS_TOKEN" not in params  # an operator's secret: never under the app's prefix
    assert "17 created" in out  # JOBTORY_ENV, DB_SSLMODE and DB_SSLROOTCERT among them

    # a re-run keeps the same secrets and writes nothing
    code, out, _ = run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    assert code == 0
    assert json.loads(secrets_file.read_text()) == stored
    assert "0 created, 0 updated, 0 deleted, 17 unchanged" in out


def test_sync_rewrites_only_changed_values(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets_file = tmp_path / "secrets.json"
    run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    client = boto3.client("ssm", region_name="ap-northeast-2")
    client.put_parameter(
        Name="/jobtory/local/VITE_API_BASE", Value="http://old", Type="String", Overwrite=True
    )
    before = client.get_parameter(Name="/jobtory/local/DB_NAME")["Parameter"]["Version"]
    code, out, _ = run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    assert code == 0
    assert "~ ssm_parameter /jobtory/local/VITE_API_BASE" in out
    assert "1 updated" in out
    assert client.get_parameter(Name="/jobtory/local/DB_NAME")["Parameter"]["Version"] == before
    assert all_params("/jobtory/local/")["VITE_API_BASE"][0].endswith(":8443/api")


def test_cloud_env_never_invents_secrets(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sync", "--env", "staging")
    assert code == 0
    params = all_params("/jobtory/staging/")
    assert not set(SECRETS) & set(params)
    assert (
        "/jobtory/staging/DJANGO_SECRET_KEY: missing in SSM; set it with "
        "`deploy.py params set --env staging DJANGO_SECRET_KEY`" in out
    )


def test_set_reads_stdin_and_never_prints(
    aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-value-that-must-not-leak-and-is-long-enough-for-django"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DJANGO_SECRET_KEY")
    assert code == 0
    assert "set (SecureString)" in out
    assert all_params("/jobtory/staging/")["DJANGO_SECRET_KEY"] == (secret, "SecureString")

    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    code, out, _ = run(capsys, "set", "--env", "staging", "DJANGO_SECRET_KEY")
    assert "unchanged" in out

    code, out, err = run(capsys, "get", "--env", "staging")
    assert code == 0
    assert "DJANGO_SECRET_KEY" in out and "<SecureString, set>" in out
    code, one, _ = run(capsys, "get", "--env", "staging", "DJANGO_SECRET_KEY")
    assert one.strip() == "<SecureString, set>"
    assert secret not in out + err + one

    # spec values are not set by hand; unknown names are refused
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, _, err = run(capsys, "set", "--env", "staging", "GOOGLE_CLIENT_ID")
    assert code == 1 and "comes from the spec" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    code, _, err = run(capsys, "set", "--env", "staging", "NOPE")
    assert code == 1 and "ssm.secrets" in err


def test_diff_shows_add_change_remove_without_secret_values(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets_file = tmp_path / "secrets.json"
    run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    code, out, _ = run(capsys, "diff", "--env", "local", "--secrets-file", str(secrets_file))
    assert out.strip().endswith("No differences.")

    client = boto3.client("ssm", region_name="ap-northeast-2")
    leaked = "changed-out-of-band-secret"
    client.put_parameter(
        Name="/jobtory/local/DJANGO_SECRET_KEY", Value=leaked, Type="SecureString", Overwrite=True
    )
    client.put_parameter(
        Name="/jobtory/local/GOOGLE_CLIENT_ID", Value="other", Type="String", Overwrite=True
    )
    client.delete_parameter(Name="/jobtory/local/VITE_API_BASE")
    # an owned parameter the spec no longer names, and a decoy nobody owns
    client.put_parameter(
        Name="/jobtory/local/OLD_SETTING",
        Value="1",
        Type="String",
        Tags=[{"Key": "stack", "Value": "jobtory"}, {"Key": "env", "Value": "local"}],
    )
    client.put_parameter(Name="/jobtory/local/DECOY", Value="1", Type="String")
    code, out, _ = run(capsys, "diff", "--env", "local", "--secrets-file", str(secrets_file))
    assert code == 0
    assert "~ DJANGO_SECRET_KEY (value differs)" in out
    assert "~ GOOGLE_CLIENT_ID (value: other -> jobtory-local)" in out
    assert "+ VITE_API_BASE = https://jobtory.localhost:8443/api" in out
    assert "- OLD_SETTING" in out
    assert "DECOY" not in out
    assert leaked not in out
    for value in json.loads(secrets_file.read_text()).values():
        assert value not in out

    run(capsys, "sync", "--env", "local", "--secrets-file", str(secrets_file))
    params = all_params("/jobtory/local/")
    assert "OLD_SETTING" not in params
    assert params["DECOY"] == ("1", "String")
    code, out, _ = run(capsys, "diff", "--env", "local", "--secrets-file", str(secrets_file))
    assert out.strip().endswith("No differences.")


def test_endpoint_flag_wins(
    aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.config import Config

    from jobtory_stack.aws import client

    # connection errors are retried with backoff (8 attempts); 2 keep the test short
    monkeypatch.setattr(
        client, "RETRY_CONFIG", Config(retries={"mode": "standard", "max_attempts": 2})
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    code, _, err = run(capsys, "get", "--env", "staging")
    assert code == 1 and "cannot reach the AWS endpoint" in err
    code, out, _ = run(capsys, "diff", "--env", "staging", "--endpoint-url", aws_env)
    assert code == 0 and "+ DB_NAME = jobtory" in out


def test_emulator_without_credentials_uses_dummy_ones(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run(capsys, "diff", "--env", "staging")
    assert code == 0, err


def test_a_secret_stored_as_plain_string_becomes_secure(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("ssm", region_name="ap-northeast-2")
    client.put_parameter(
        Name="/jobtory/staging/DJANGO_SECRET_KEY", Value="was-plain-text", Type="String"
    )
    code, out, _ = run(capsys, "diff", "--env", "staging")
    assert (  # an existing parameter this stack did not create: taken over, marked adopted
        "~ DJANGO_SECRET_KEY (type: String -> SecureString; tags: (none) -> stack, env, "
        "adopted=true (an existing resource, taken over))"
    ) in out
    code, out, _ = run(capsys, "sync", "--env", "staging")
    assert code == 0 and "was-plain-text" not in out
    assert all_params("/jobtory/staging/")["DJANGO_SECRET_KEY"] == (
        "was-plain-text",
        "SecureString",
    )
    code, out, _ = run(capsys, "diff", "--env", "staging")
    assert "DJANGO_SECRET_KEY (" not in out


# ---- secrets: shapes, the database's password, the operators' prefix -----------------------


def test_the_operators_secrets_live_outside_the_apps_prefix(
    aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtory_stack.ssm_env import load_env

    token = "0f6a1c2e-9b7d-4e3a-8c51-5d2f0e7a9b13"
    code, out, _ = run(capsys, "sync", "--env", "staging")
    assert (
        "! /jobtory/_ops/staging/DUCKDNS_TOKEN: missing in SSM; set it with `deploy.py params "
        "set --env staging DUCKDNS_TOKEN` (operators only: the app never loads it)"
    ) in out
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DUCKDNS_TOKEN")
    assert code == 0, err
    assert out.strip() == "/jobtory/_ops/staging/DUCKDNS_TOKEN: set (SecureString)"
    assert all_params("/jobtory/_ops/staging/") == {"DUCKDNS_TOKEN": (token, "SecureString")}
    client = boto3.client("ssm", region_name="ap-northeast-2")
    app_env = load_env("/jobtory/staging/", client=client)  # what the app and env file get
    assert "DUCKDNS_TOKEN" not in app_env and token not in app_env.values()
    code, out, _ = run(capsys, "get", "--env", "staging")
    assert "/jobtory/_ops/staging/DUCKDNS_TOKEN  <SecureString, set>" in out
    assert token not in out


def test_a_new_database_password_goes_to_the_database_first(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    client_hook: Any,
) -> None:
    assert main(["apply", "--spec", SPEC, "--env", "staging"]) == 0
    capsys.readouterr()
    calls: list[tuple[str, dict[str, Any]]] = []
    client_hook(
        lambda c: c.meta.events.register(
            "before-parameter-build",
            lambda model, params, **_: calls.append((model.name, dict(params))),
        )
    )
    password = "New-Password_0123456789"
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DB_PASSWORD")
    assert code == 0, err
    writes = [(op, p) for op, p in calls if op in {"ModifyDBInstance", "PutParameter"}]
    assert [op for op, _ in writes] == ["ModifyDBInstance", "PutParameter"]  # RDS first
    assert writes[0][1] == {
        "DBInstanceIdentifier": "jobtory-staging-db",
        "MasterUserPassword": password,
        "ApplyImmediately": True,
    }
    assert all_params("/jobtory/staging/")["DB_PASSWORD"] == (password, "SecureString")
    assert "~ db_instance jobtory-staging-db: master password (never shown)" in out
    assert "until `deploy.py hosts --env staging` has run" in out
    assert password not in out + err

    # SSM fails after RDS took the password: said so, and the same command finishes it
    def fail_put(model: Any, **_: Any) -> None:
        if model.name == "PutParameter" and not failed:
            failed.append(model.name)
            raise ClientError({"Error": {"Code": "InternalFailure", "Message": password}}, "Put")

    failed: list[str] = []
    client_hook(lambda c: c.meta.events.register("before-call", fail_put))
    second = "Second-Password_0123456789"
    monkeypatch.setattr("sys.stdin", io.StringIO(second + "\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DB_PASSWORD")
    assert code == 1
    assert [x for x in err.splitlines() if x.startswith("error:")] == [
        "error: the database has the new password but SSM still holds the old one "
        "(PutParameter failed: InternalFailure); run the same `params set` again with the same "
        "value"
    ]
    assert password not in err  # AWS's message is left out: it could quote the value
    assert all_params("/jobtory/staging/")["DB_PASSWORD"] == (password, "SecureString")
    monkeypatch.setattr("sys.stdin", io.StringIO(second + "\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DB_PASSWORD")
    assert code == 0, err
    assert all_params("/jobtory/staging/")["DB_PASSWORD"] == (second, "SecureString")


def test_a_password_rds_refuses_leaves_ssm_as_it_was(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    client_hook: Any,
) -> None:
    assert main(["apply", "--spec", SPEC, "--env", "staging"]) == 0
    before = all_params("/jobtory/staging/")["DB_PASSWORD"]

    def refuse(model: Any, **_: Any) -> None:
        if model.name == "ModifyDBInstance":
            raise ClientError(
                {"Error": {"Code": "InvalidParameterValue", "Message": "no"}}, model.name
            )

    client_hook(lambda c: c.meta.events.register("before-call", refuse))
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("Another-Password_0123456789\n"))
    code, _, err = run(capsys, "set", "--env", "staging", "DB_PASSWORD")
    assert code == 1 and "ModifyDBInstance failed (InvalidParameterValue)" in err
    assert all_params("/jobtory/staging/")["DB_PASSWORD"] == before  # the app's still works


def test_without_a_database_the_password_goes_to_ssm_only(
    aws_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("First-Password_0123456789\n"))
    code, out, err = run(capsys, "set", "--env", "staging", "DB_PASSWORD")
    assert code == 0, err
    assert out.splitlines() == [
        "/jobtory/staging/DB_PASSWORD: set (SecureString)",
        "  (no database yet: apply creates it with this password)",
    ]
