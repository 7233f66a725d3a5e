"""Faults and operations on the running replica: database restart and crash, a
changed SSM value, backup/restore. Each waits (bounded) for the chain to recover
and leaves the replica as it found it. The app container is never restarted
unless the test is about restarting it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers import ON_THE_REPLICA_WORKER, ROOT
from tests.replica.conftest import (
    Replica,
    compose,
    container_started_at,
    ssm_client,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.replica, ON_THE_REPLICA_WORKER]

RECOVERY_TIMEOUT = 90.0


def create_problem(replica: Replica, http: httpx.Client, title: str) -> int:
    r = http.post("/api/problems/", json={"title": title}, headers=replica.csrf_headers(http))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def problem_readable(replica: Replica, problem_id: int, title: str) -> bool:
    with replica.client() as http:
        r = http.get(f"/api/problems/{problem_id}/")
    return r.status_code == 200 and r.json()["title"] == title


def restart_count(service: str) -> int:
    cid = compose("ps", "-q", service).stdout.strip()
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.RestartCount}}", cid],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return int(out.stdout.strip())


@pytest.fixture
def signed_in(replica: Replica) -> Iterator[httpx.Client]:
    replica.wait_ready()
    with replica.client() as http:
        replica.sign_in(http, "resilience@example.test")
        yield http


def test_db_restart_keeps_rows_and_the_app_recovers_without_restart(
    replica: Replica, signed_in: httpx.Client
) -> None:
    title = unique("Survives a restart")
    problem_id = create_problem(replica, signed_in, title)
    app_started = container_started_at("app")

    compose("restart", "db", timeout=120)

    took = wait_until(
        lambda: problem_readable(replica, problem_id, title),
        RECOVERY_TIMEOUT,
        "the problem readable through the ALB after `docker compose restart db`",
    )
    assert container_started_at("app") == app_started, "the app was restarted"
    print(f"recovered {took:.1f}s after the db restart")


def test_postmaster_kill_9_keeps_rows_and_the_app_recovers(
    replica: Replica, signed_in: httpx.Client
) -> None:
    title = unique("Survives kill -9")
    problem_id = create_problem(replica, signed_in, title)
    app_started = container_started_at("app")
    restarts = restart_count("db")
    old_pid = compose(
        "exec", "-T", "db", "head", "-n1", "/var/lib/postgresql/data/postmaster.pid"
    ).stdout.strip()
    assert old_pid.isdigit() and old_pid != "1", "the postmaster must not be PID 1 (init: true)"

    # a crash: SIGKILL to the postmaster (no shutdown checkpoint); the container's
    # restart policy brings it back and Postgres runs crash recovery from the WAL
    compose("exec", "-T", "db", "kill", "-9", old_pid, check=False)

    wait_until(
        lambda: restart_count("db") > restarts,
        60,
        "the db container restarted by its restart policy",
    )
    took = wait_until(
        lambda: problem_readable(replica, problem_id, title),
        RECOVERY_TIMEOUT,
        "the problem readable through the ALB after kill -9 of the postmaster",
    )
    logs = compose("logs", "--no-color", "--since", "5m", "db").stdout
    assert "was interrupted" in logs or "not properly shut down" in logs, "no crash recovery?"
    assert container_started_at("app") == app_started, "the app was restarted"
    print(f"recovered {took:.1f}s after kill -9")


def test_a_changed_ssm_value_reaches_the_app_on_restart(replica: Replica) -> None:
    replica.wait_ready()
    ssm = ssm_client()
    name = f"{replica.spec.ssm_prefix}GOOGLE_CLIENT_ID"
    original = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    changed = f"{original}-rotated"

    def client_id_sent() -> str:
        with replica.client() as http:
            r = http.get("/auth/google/login")
        assert r.status_code == 302, f"{r.status_code} {r.headers} {r.text[:300]}"
        return parse_qs(urlsplit(r.headers["location"]).query)["client_id"][0]

    assert client_id_sent() == original
    try:
        ssm.put_parameter(Name=name, Value=changed, Type="String", Overwrite=True)
        compose("restart", "app", timeout=120)  # no rebuild, no compose change
        # through the ALB: bounded polling while its health checks see the target again
        wait_until(lambda: client_id_sent() == changed, RECOVERY_TIMEOUT, "the new client_id")
    finally:
        ssm.put_parameter(Name=name, Value=original, Type="String", Overwrite=True)
        compose("restart", "app", timeout=120)
        wait_until(lambda: client_id_sent() == original, RECOVERY_TIMEOUT, "the old client_id")


def show(replica: Replica, name: str) -> str:
    return str(replica.query(f"SHOW {name}")[0][0])


def test_a_spec_change_reaches_postgres_without_a_rebuild(replica: Replica, tmp_path: Path) -> None:
    """`up` re-renders the configs from the spec (config service); a db restart applies them."""
    original = int(replica.spec.rds_parameters["max_connections"])
    changed = original + 7
    text = (ROOT / "stack.toml").read_text()
    spec = tmp_path / "stack.toml"
    spec.write_text(
        re.sub(r"(?m)^max_connections\s*=\s*\d+", f"max_connections = {changed}", text, count=1)
    )
    app_started = container_started_at("app")
    try:
        compose("up", "-d", "--wait", "config", "db", env={"STACK_SPEC": str(spec)}, timeout=300)
        compose("restart", "db", timeout=120)
        wait_until(
            lambda: show(replica, "max_connections") == str(changed), 60, "the new max_connections"
        )
    finally:
        compose("up", "-d", "--wait", "config", "db", timeout=300)
        compose("restart", "db", timeout=120)
        wait_until(
            lambda: show(replica, "max_connections") == str(original), 60, "max_connections back"
        )
    assert container_started_at("app") == app_started, "the app was restarted"
    replica.wait_ready(RECOVERY_TIMEOUT)


def test_backup_and_restore_round_trip(
    replica: Replica, signed_in: httpx.Client, tmp_path: Path
) -> None:
    dump = tmp_path / "jobtory.dump"
    kept, lost = unique("In the backup"), unique("After the backup")
    kept_id = create_problem(replica, signed_in, kept)
    subprocess.run([ROOT / "scripts" / "backup", dump], check=True, timeout=120)
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump custom format
    lost_id = create_problem(replica, signed_in, lost)

    # without --yes nothing happens
    refused = subprocess.run(
        [ROOT / "scripts" / "restore", dump], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert problem_readable(replica, lost_id, lost)
    # a broken dump fails and leaves the database untouched
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP not really")
    failed = subprocess.run(
        [ROOT / "scripts" / "restore", "--yes", broken], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1, failed.stderr
    assert problem_readable(replica, lost_id, lost)

    subprocess.run([ROOT / "scripts" / "restore", "--yes", dump], check=True, timeout=300)

    wait_until(
        lambda: problem_readable(replica, kept_id, kept),
        RECOVERY_TIMEOUT,
        "the backed-up problem readable after the restore",
    )
    with replica.client() as http:
        assert http.get(f"/api/problems/{lost_id}/").status_code == 404
    titles = [t for (t,) in replica.query("SELECT title FROM problems_problem")]
    assert kept in titles and lost not in titles
    # the restored database keeps the owner and the parameter group settings
    assert replica.query("SHOW timezone") == [("Asia/Seoul",)]
    owner = replica.query(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    )
    assert owner == [(replica.spec.username,)]
