"""Postgres like RDS, SSM like Parameter Store, and the app's data path end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import ON_THE_REPLICA_WORKER
from tests.replica.conftest import AWS_URL, DB_PORT, OIDC_PORT, Replica, ssm_client, unique

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]


def test_postgres_runs_the_spec_parameter_group(replica: Replica) -> None:
    params = replica.spec.rds_parameters
    with replica.connect_db() as conn:
        for name, value in params.items():
            # pg_settings.setting is the raw value in the parameter's base unit (like RDS)
            row = conn.execute(
                "SELECT setting FROM pg_settings WHERE lower(name) = lower(%s)", (name,)
            )
            shown = row.fetchone()
            assert shown is not None, f"{name}: not a server parameter"
            want = (
                {True: "on", False: "off"}.get(value, str(value))
                if isinstance(value, bool)
                else str(value)
            )
            assert shown[0] == want, f"{name}: {shown[0]!r} != spec {value!r}"
        assert conn.execute("SHOW timezone").fetchone()[0] == "Asia/Seoul"
        assert conn.execute("SHOW max_connections").fetchone()[0] == str(params["max_connections"])
        version = conn.execute("SHOW server_version_num").fetchone()[0]
    assert params["timezone"] == "Asia/Seoul"
    assert int(version) // 10000 == int(replica.spec.engine_version.split(".")[0])


def test_postgres_refuses_the_superuser_over_tcp(replica: Replica) -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="pg_hba"):
        psycopg.connect(
            host="127.0.0.1",
            port=DB_PORT,
            dbname="postgres",
            user="postgres",
            password="x",
            connect_timeout=5,
        )


def parameters_by_path(path: str) -> list[dict[str, str]]:
    """`aws ssm get-parameters-by-path --recursive` against the emulator on 127.0.0.1.

    The AWS CLI when it is installed; otherwise the same API call through boto3.
    """
    aws = shutil.which("aws")
    if aws is None:
        found: list[dict[str, str]] = []
        for page in (
            ssm_client().get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True)
        ):
            found += page["Parameters"]
        return found
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
    }
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(
        [aws, "--endpoint-url", AWS_URL, "ssm", "get-parameters-by-path",
         "--path", path, "--recursive", "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    return list(json.loads(out.stdout)["Parameters"])


def test_ssm_holds_every_parameter_with_secrets_as_securestring(replica: Replica) -> None:
    params = {p["Name"]: p for p in parameters_by_path(replica.spec.ssm_prefix)}
    prefix = replica.spec.ssm_prefix
    expected = {prefix + name for name in replica.spec.parameters} | {
        prefix + name for name in replica.spec.secrets
    }
    assert expected <= set(params), f"missing: {sorted(expected - set(params))}"
    for name in replica.spec.secrets:
        assert params[prefix + name]["Type"] == "SecureString", name
    for name, value in replica.spec.parameters.items():
        assert params[prefix + name]["Type"] == "String", name
        assert params[prefix + name]["Value"] == value, name
    # the local env's names the brief promises
    plain = replica.spec.parameters
    assert plain["DB_HOST"] == "db" and plain["DB_PORT"] == "5432"
    assert plain["FRONTEND_BASE_URL"] == replica.base_url


def test_sign_in_uses_the_derived_redirect_uri_and_stores_the_user(replica: Replica) -> None:
    email = f"{unique('user').replace(' ', '-')}@example.test"
    redirect_uri = ssm_client().get_parameter(Name=f"{replica.spec.ssm_prefix}GOOGLE_REDIRECT_URI")[
        "Parameter"
    ]["Value"]
    assert redirect_uri == f"{replica.base_url}/auth/google/callback"
    with replica.client() as http:
        r = http.get("/auth/google/login", params={"login_hint": email})
        assert r.status_code == 302
        location = urlsplit(r.headers["location"])
        query = parse_qs(location.query)
        assert f"{location.scheme}://{location.netloc}" == f"http://127.0.0.1:{OIDC_PORT}"
        assert query["redirect_uri"] == [redirect_uri]
        assert query["client_id"] == [replica.spec.parameters["GOOGLE_CLIENT_ID"]]
        me = replica.sign_in(http, email)
    assert me["email"] == email
    rows = replica.query("SELECT google_sub, email FROM accounts_user WHERE email = %s", email)
    assert rows == [(me["sub"], email)]


def test_problem_created_through_the_api_reads_back(replica: Replica) -> None:
    title = unique("Two sum")
    with replica.client() as http:
        replica.sign_in(http, "author@example.test")
        headers = replica.csrf_headers(http)
        r = http.post(
            "/api/problems/", json={"title": title, "statement": "add them"}, headers=headers
        )
        assert r.status_code == 201, r.text
        created = r.json()
        back = http.get(f"/api/problems/{created['id']}/")
        assert back.status_code == 200
        assert back.json()["title"] == title
        listed = http.get("/api/problems/").json()
    assert title in [p["title"] for p in listed["results"]]
    rows = replica.query("SELECT title FROM problems_problem WHERE id = %s", created["id"])
    assert rows == [(title,)]


def test_post_without_csrf_token_is_refused(replica: Replica) -> None:
    with replica.client() as http:
        replica.sign_in(http, "author@example.test")
        r = http.post("/api/problems/", json={"title": "no token"})
    assert r.status_code == 403
