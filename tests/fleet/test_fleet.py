"""The host deploy against the fleet replica: fresh hosts, idempotence, a rolling deploy
under load, rollback, faults, the lock, the env file and secrets.

The tests run in file order and build on each other (one fleet per session): the
first deploy installs `old` on fresh hosts, the rolling deploy moves them to `new`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.conftest import (
    AWS_URL,
    CONTAINERS,
    ROOT,
    Deploy,
    Fleet,
    Load,
    alb_versions,
    host_exec,
    run_deploy,
    ssm,
    wait_targets,
)
from tests.helpers import ON_THE_REPLICA_WORKER

pytestmark = [pytest.mark.fleet, ON_THE_REPLICA_WORKER, pytest.mark.timeout(900)]

OUTPUTS: list[str] = []  # every deploy's output, for the secrets check


def deploy(*args: str) -> Deploy:
    result = run_deploy(*args)
    OUTPUTS.append(result.output)
    return result


def local_env() -> object:
    from jobtory_stack.spec.loader import load_stack

    return load_stack(ROOT / "stack.toml").env("local")


# gunicorn on the host, as the ALB's request reaches it (Caddy trusts X-Forwarded-* only
# from the VPC / compose network, so checks from inside the host talk to gunicorn)
APP = "-H 'Host: jobtory.localhost' -H 'X-Forwarded-Proto: https' http://127.0.0.1:8000"


def current_version(host: str) -> str:
    out = host_exec(host, "readlink /srv/jobtory/current").stdout.strip()
    return out.rpartition("/")[2]


# ---- fresh hosts, idempotence ------------------------------------------------------------


def test_fresh_hosts_serve_through_the_alb(fleet: Fleet, first_deploy: Deploy) -> None:
    OUTPUTS.append(first_deploy.output)
    assert first_deploy.summary["result"] == "ok"
    assert [h["name"] for h in first_deploy.summary["hosts"]] == ["ec2-1", "ec2-2"]
    targets = wait_targets("healthy", timeout=60)
    assert {t.name for t in targets} == {"ec2-1:80", "ec2-2:80"}
    for host in CONTAINERS:
        assert current_version(host) == fleet.old
        local = host_exec(
            host, f"curl -fsS {APP}/api/version && curl -fsS -o /dev/null http://127.0.0.1/healthz"
        )
        assert json.loads(local.stdout)["version"] == fleet.old, local.stderr
        units = host_exec(host, "systemctl is-active jobtory-gunicorn jobtory-caddy").stdout
        assert units.split() == ["active", "active"]
    assert alb_versions(20) == {fleet.old: 20}


def test_second_deploy_reports_no_changed_operations(fleet: Fleet, first_deploy: Deploy) -> None:
    again = deploy("--version", fleet.old)
    assert again.code == 0, again.output
    assert again.summary["changed_operations"] == 0
    assert again.summary["result"] == "no change"
    assert all(h["planned"] == 0 and h["result"] == "no change" for h in again.summary["hosts"])
    assert "draining" not in again.output  # a no-op deploy never touches the balancer


def test_env_file_holds_the_ssm_values_with_mode_0600(first_deploy: Deploy) -> None:
    from jobtory_stack.ssm_env import load_env, render_env_file

    env = local_env()
    want = render_env_file(load_env(env.ssm_prefix, client=ssm()))  # type: ignore[attr-defined]
    for host in CONTAINERS:
        stat = host_exec(host, "stat -c '%a %U %G' /etc/jobtory/env").stdout.split()
        assert stat == ["600", "jobtory", "jobtory"]
        have = host_exec(host, "cat /etc/jobtory/env").stdout
        assert have == want, f"{host}: /etc/jobtory/env differs from SSM"
        # the app user can read it (systemd reads it as root anyway); others cannot
        assert host_exec(host, "runuser -u jobtory-web -- cat /etc/jobtory/env").returncode != 0


# ---- the deploy lock --------------------------------------------------------------------


def test_two_deploys_at_once_the_second_refuses_naming_the_holder(
    fleet: Fleet, first_deploy: Deploy
) -> None:
    from jobtory_stack.hosts.lock import parameter_names

    lock_name, _ = parameter_names("jobtory", "local")
    client = ssm()
    # A no-op deploy takes about two seconds: ec2-2 is paused (its SSH does not answer)
    # so that the first deploy still holds the lock when the second asks for it.
    subprocess.run(["docker", "pause", CONTAINERS["ec2-2"]], check=True, capture_output=True)
    paused = True
    first = subprocess.Popen(
        [sys.executable, "deploy.py", "hosts", "--env", "local", "--version", fleet.old],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": AWS_URL, "JOBTORY_DEPLOYER": "alice"},
    )
    try:
        deadline = time.monotonic() + 60
        holder = None
        while time.monotonic() < deadline and holder is None:
            try:
                holder = client.get_parameter(Name=lock_name)["Parameter"]["Value"]
            except client.exceptions.ParameterNotFound:
                time.sleep(0.1)
        assert holder is not None, "the first deploy never took the lock"
        second = deploy("--version", fleet.old)
        assert second.code == 1
        assert "another deploy holds the lock" in second.output
        assert "alice@" in second.output and f"pid {first.pid}" in second.output
    finally:
        if paused:
            subprocess.run(["docker", "unpause", CONTAINERS["ec2-2"]], check=True)
        out, _ = first.communicate(timeout=300)
        OUTPUTS.append(out)
    assert first.returncode == 0, out


def test_a_stale_lock_is_taken_over(fleet: Fleet, first_deploy: Deploy) -> None:
    from jobtory_stack.hosts.lock import DeployLock, parameter_names

    lock_name, _ = parameter_names("jobtory", "local")
    crashed = DeployLock(ssm(), lock_name, "v0", owner="bob@gone pid 1")
    crashed.acquire()
    # back-date it: a deploy that crashed an hour ago (its heartbeat stopped then)
    hour_ago = time.time() - 3600
    crashed.ssm.put_parameter(  # type: ignore[attr-defined]
        Name=lock_name,
        Value=json.dumps(
            {**json.loads(crashed.info.to_json()), "since": hour_ago, "heartbeat": hour_ago}
        ),
        Type="String",
        Overwrite=True,
    )
    result = deploy("--version", fleet.old, "--lock-timeout", "600")
    assert result.code == 0, result.output
    assert "replaced a stale lock of bob@gone pid 1" in result.output


# ---- rolling deploy under load ----------------------------------------------------------


def test_rolling_deploy_under_load_fails_no_request(fleet: Fleet, first_deploy: Deploy) -> None:
    with Load(workers=3, max_requests=100000, max_seconds=400) as load:
        load.wait_for(200, timeout=60)
        result = deploy("--version", fleet.new)
        load.wait_for(2000, timeout=120)  # at least 2,000 requests in all
        time.sleep(1)
        load.stop()
    assert result.code == 0, result.output
    versions = load.versions()
    failures = load.failures
    print(
        f"\nrolling deploy: {len(load.results)} requests, {len(failures)} failed, "
        f"deploy {result.seconds:.1f}s"
    )
    assert len(load.results) >= 2000
    assert failures == [], f"{len(failures)} failed requests: {failures[:5]}"
    # old first, new at the end, nothing else
    assert versions[0] == fleet.old
    assert versions[-50:] == [fleet.new] * 50
    assert set(versions) == {fleet.old, fleet.new}
    assert alb_versions(20) == {fleet.new: 20}


def _broken_source(tmp: Path, where: str) -> Path:
    """A checkout of this repo's release sources whose /readyz fails: always ("always") or
    only on the live port 8000 ("live": passes the candidate check, fails after the switch).
    A git checkout, as --source must be: a release ships what git tracks."""
    from jobtory_stack.hosts.release import source_files

    for name, path in source_files(ROOT):
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, tmp / name)
    condition = (
        "True" if where == "always" else 'os.environ.get("GUNICORN_BIND", "").endswith(":8000")'
    )
    health = tmp / "app" / "core" / "health.py"
    health.write_text(
        health.read_text()
        + f"""

import os  # noqa: E402

_real_readyz = readyz


def readyz(request):  # a broken release, for the rollback test
    if {condition}:
        body = {{"status": "unavailable", "reasons": ["broken on purpose"]}}
        return JsonResponse(body, status=503)
    return _real_readyz(request)
"""
    )
    subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp, check=True)
    return tmp


@pytest.mark.parametrize("where", ["always", "live"])
def test_a_release_failing_readyz_is_rolled_back(
    fleet: Fleet, first_deploy: Deploy, tmp_path: Path, where: str
) -> None:
    before = {h: current_version(h) for h in CONTAINERS}
    assert set(before.values()) == {fleet.new}, "run after the rolling deploy"
    bad = f"{fleet.bad}-{where}"
    with Load(workers=2, max_requests=20000, max_seconds=300) as load:
        result = deploy("--version", bad, "--source", str(_broken_source(tmp_path, where)))
        load.stop()
    assert result.code == 1, result.output
    assert "broken on purpose" in result.output
    if where == "always":
        assert f"release {bad} failed /readyz before the switch" in result.output
        assert f"current stays {fleet.new}" in result.output
    else:
        assert f"release {bad} failed /readyz after the switch" in result.output
        assert f"rolled back to {fleet.new}" in result.output
    assert result.summary["result"].startswith("failed")
    # the first host failed and was put back; the second was never touched
    assert [h["name"] for h in result.summary["hosts"]] == ["ec2-1"]
    assert {h: current_version(h) for h in CONTAINERS} == before
    wait_targets("healthy", timeout=60)
    assert alb_versions(20) == {fleet.new: 20}
    assert load.failures == [], f"{len(load.failures)} failed requests during the rollback"


# ---- a changed SSM value reaches the hosts (env file re-rendered, gunicorn restarted) ----


def test_changed_ssm_value_is_rolled_out_without_a_new_release(
    fleet: Fleet, first_deploy: Deploy
) -> None:
    name = local_env().ssm_prefix + "JOBTORY_FLEET_TEST_MARK"  # type: ignore[attr-defined]
    client = ssm()
    version = current_version("ec2-1")  # whatever the earlier tests left: no new release
    client.put_parameter(Name=name, Value=f"mark-{time.time():.0f}", Type="String", Overwrite=True)
    try:
        with Load(workers=2, max_requests=20000, max_seconds=300) as load:
            result = deploy("--version", version)
            load.stop()
        assert result.code == 0, result.output
        for host in result.summary["hosts"]:
            # the env file and the restart it needs (+ maybe a prune); no release change
            assert host["changed"] >= 2 and host["planned"] == host["changed"], result.output
        for host in CONTAINERS:
            assert "JOBTORY_FLEET_TEST_MARK=" in host_exec(host, "cat /etc/jobtory/env").stdout
            assert current_version(host) == version
        assert load.failures == []
    finally:
        client.delete_parameter(Name=name)
    cleanup = deploy("--version", version)
    assert cleanup.code == 0 and cleanup.summary["changed_operations"] >= 4, cleanup.output


# ---- faults: the ALB routes around a dead host ------------------------------------------


CADDY_RETRY = 5  # lb_try_duration in the Caddyfile: a request may wait that long


def _fault(host: str, stop: str, timeout: float = 60) -> tuple[float, float]:
    """Start the fault and wait until the ALB marks the host unhealthy; returns when it
    started and when the ALB noticed (monotonic seconds)."""
    from jobtory_stack.hosts.standin import AlbRuntime

    runtime = AlbRuntime("127.0.0.1", int(os.environ.get("ALB_FLEET_RUNTIME_PORT", "9998")))
    t0 = time.monotonic()
    subprocess.run(stop, shell=True, check=True, capture_output=True, timeout=60)
    while runtime.target(f"{host}:80").health != "unhealthy":
        assert time.monotonic() - t0 < timeout, f"{host} never marked unhealthy"
        time.sleep(0.2)
    return t0, time.monotonic()


def _after(load: Load, noticed: float) -> list[tuple[float, str]]:
    """Failed requests that STARTED after the ALB noticed (in-flight ones may still fail)."""
    return [r for r in load.failures if r[0] > noticed + 0.5]


def test_stopped_gunicorn_is_routed_around_and_redeploy_restarts_it(
    fleet: Fleet, first_deploy: Deploy
) -> None:
    with Load(workers=4, max_requests=30000, max_seconds=300) as load:
        load.wait_for(100)
        # the socket too: a connection to the socket alone would start gunicorn again
        t0, noticed = _fault(
            "ec2-1",
            f"docker exec {CONTAINERS['ec2-1']} "
            "systemctl stop jobtory-gunicorn.socket jobtory-gunicorn.service",
        )
        time.sleep(CADDY_RETRY + 1)  # requests already inside Caddy's retries end
        mark = len(load.results)
        load.wait_for(mark + 500)
        load.stop()
    failed = len(load.failures)
    print(
        f"\ngunicorn stopped on ec2-1: {failed} failed of {len(load.results)} requests; "
        f"the ALB noticed after {noticed - t0:.1f}s"
    )
    assert failed <= 4 * 200, "failures are bounded by the detection window"
    assert _after(load, noticed) == [], "once unhealthy, the ALB sends nothing to ec2-1"
    # the deploy notices and brings it back (running=True is part of the desired state)
    result = deploy("--version", current_version("ec2-2"))
    assert result.code == 0, result.output
    assert result.summary["hosts"][0]["planned"] >= 1
    wait_targets("healthy", timeout=60)


def test_stopped_host_is_routed_around_and_comes_back_by_itself(
    fleet: Fleet, first_deploy: Deploy
) -> None:
    container = CONTAINERS["ec2-2"]
    with Load(workers=4, max_requests=30000, max_seconds=300) as load:
        load.wait_for(100)
        t0, noticed = _fault("ec2-2", f"docker stop -t 30 {container}")
        time.sleep(11)  # requests in flight to the vanished host end (client timeout 10 s)
        mark = len(load.results)
        load.wait_for(mark + 500)
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        wait_targets("healthy", timeout=120)  # systemd boots, the enabled units start
        load.stop()
    failed = len(load.failures)
    print(
        f"\nec2-2 stopped: {failed} failed of {len(load.results)} requests; "
        f"the ALB noticed after {noticed - t0:.1f}s"
    )
    assert failed <= 4 * 200
    assert _after(load, noticed) == []
    assert alb_versions(20) == {current_version("ec2-1"): 20}


# ---- secrets --------------------------------------------------------------------------------


def test_secrets_absent_from_process_arguments_logs_and_repo(first_deploy: Deploy) -> None:
    from jobtory_stack.spec.derived import derive

    env = local_env()
    client = ssm()
    secrets: dict[str, str] = {}
    for name in derive(env).secret_names:  # type: ignore[arg-type]
        try:
            param = client.get_parameter(
                Name=env.ssm_prefix + name,
                WithDecryption=True,
            )
        except client.exceptions.ParameterNotFound:
            continue
        if len(param["Parameter"]["Value"]) >= 8:
            secrets[name] = param["Parameter"]["Value"]
    assert secrets, "no secrets in SSM to look for"
    haystacks: dict[str, str] = {"deploy output": "\n".join(OUTPUTS)}
    for host in CONTAINERS:
        haystacks[f"{host} process arguments"] = host_exec(host, "ps -eo args").stdout
        haystacks[f"{host} journal"] = host_exec(
            host, "journalctl --no-pager -q", timeout=120
        ).stdout
    logs = ROOT / ".local" / "logs"
    haystacks["deploy logs"] = "\n".join(p.read_text() for p in logs.glob("hosts-*.log"))
    for name, value in secrets.items():
        for where, text in haystacks.items():
            assert value not in text, f"secret {name} found in {where}"
        tracked = subprocess.run(
            ["git", "grep", "-q", "--untracked", "-F", "-e", value],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
        assert tracked.returncode == 1, f"secret {name} found in the repository"


# ---- user data: a new ASG instance bootstraps itself with the same deploy ------------------


def inspect(host: str, template: str) -> str:
    """`docker inspect -f TEMPLATE` of a fleet host's container."""
    out = subprocess.run(
        ["docker", "inspect", "-f", template, CONTAINERS[host]],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def publish_the_fleets_release(version: str) -> tuple[Any, Any]:
    """The release store of `local` in the replica's emulator (made as `apply` makes it:
    the store family; the replica has none otherwise), holding the release the hosts run,
    published under the version they run (`deploy.py hosts` built its code object and
    wheelhouse into .local/releases). Returns (ctx, release)."""
    from jobtory_stack.aws import store as bucket
    from jobtory_stack.aws.core import new_ctx
    from jobtory_stack.hosts import store
    from jobtory_stack.hosts.release import Release, manifest_bytes, store_object
    from jobtory_stack.hosts.settings import ARTIFACTS_DIR, Manifest
    from jobtory_stack.spec.constants import RELEASE_MANIFEST_KEY
    from jobtory_stack.spec.loader import load_stack

    env = load_stack(ROOT / "stack.toml").env("local")
    ctx = new_ctx(env, endpoint_flag=AWS_URL, out=lambda line: None)
    for change in bucket.plan(ctx):
        bucket.apply(ctx, change)
    artifacts = Manifest.load(ARTIFACTS_DIR, version)
    objects = [
        store_object("code", ARTIFACTS_DIR / artifacts.source),
        store_object("wheels", ARTIFACTS_DIR / artifacts.wheels),
    ]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    manifest = manifest_bytes(artifacts, commit, True, objects)
    release = Release(version, commit, True, artifacts, manifest, ARTIFACTS_DIR)
    # a run from another commit published this version with another manifest: replace it
    # (a test's store; a real release never changes once published)
    name = bucket.bucket_name(ctx)
    bucket.s3(ctx).delete_object(Bucket=name, Key=RELEASE_MANIFEST_KEY.format(name=version))
    store.publish(ctx, release)
    return ctx, release


def run_user_data(name: str, user_data: str, timeout: float) -> tuple[int, str]:
    """The user data on host container `name`, as cloud-init runs it: (exit code, output)."""
    boot = subprocess.run(
        ["docker", "exec", "-i", name, "bash", "-s"],
        input=user_data,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = boot.stdout + boot.stderr
    OUTPUTS.append(output)
    return boot.returncode, output


def test_user_data_bootstraps_a_new_host_identical_to_its_peers(fleet: Fleet) -> None:
    """A third stand-in host, not in any inventory, runs the rendered user data: it
    fetches the release its peers run from the release store and verifies it (a tampered
    object stops the boot before anything is unpacked), then runs pyinfra against @local.
    One host boots: the tampered store first, then the store restored."""
    from jobtory_stack.aws import store as bucket_family
    from jobtory_stack.hosts import store

    version = current_version("ec2-1")
    ctx, release = publish_the_fleets_release(version)
    network = inspect("ec2-1", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}")
    # the replica's db CA, mounted where the spec's DB_SSLROOTCERT points, as on its peers
    mount = '{{range .Mounts}}{{if eq .Destination "/etc/jobtory/db-ca"}}{{.Name}}{{end}}{{end}}'
    db_ca = inspect("ec2-1", mount)
    assert db_ca, "ec2-1 has no /etc/jobtory/db-ca mount"
    user_data = subprocess.run(
        [
            sys.executable,
            "deploy.py",
            "hosts",
            "--env",
            "local",
            "--user-data",
            "--version",
            version,
            "--aws-env",
            "AWS_ENDPOINT_URL=http://aws:4566,"
            "AWS_SHARED_CREDENTIALS_FILE=/etc/jobtory-instance/aws-credentials",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "AWS_ENDPOINT_URL": AWS_URL},
    ).stdout
    assert f"\nMANIFEST_SHA256={release.manifest_sha256}\n" in user_data
    name = f"jobtory-ec2-userdata-{os.getpid()}"
    cgroup_ro = "ro" if not os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "rw"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            "ec2-3",
            "--network",
            network,
            "--cap-add",
            "SYS_ADMIN",
            "--cgroupns",
            "host",
            "--security-opt",
            "apparmor=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            f"/sys/fs/cgroup:/sys/fs/cgroup:{cgroup_ro}",
            "-v",
            f"{db_ca}:/etc/jobtory/db-ca:ro",
            "jobtory/ec2:latest",
        ],
        check=True,
        capture_output=True,
    )
    code = next(o for o in release.objects if o["role"] == "code")
    s3, bucket = bucket_family.s3(ctx), bucket_family.bucket_name(ctx)
    try:
        deadline = time.monotonic() + 60
        while host_exec(name, "systemctl is-system-running").stdout.strip() not in (
            "running",
            "degraded",
        ):
            assert time.monotonic() < deadline, "the new host did not boot"
            time.sleep(0.5)
        assert host_exec(name, "python3 -c 'import boto3'").returncode == 0, (
            "jobtory/ec2 has no python3-boto3: rebuild it (scripts/build-images ec2-1)"
        )

        # a tampered object in the store (other bytes at the code object's key, even its
        # sha256 metadata kept): the boot stops before anything is unpacked
        s3.put_object(
            Bucket=bucket,
            Key=code["key"],
            Body=b"not the release",
            Metadata={"sha256": code["sha256"]},
        )
        try:
            status, output = run_user_data(name, user_data, timeout=180)
        finally:  # the store as published again, whatever happened
            with (release.out / code["file"]).open("rb") as body:
                store.upload(ctx, bucket, code["key"], body, code["sha256"])
        output += host_exec(name, "cat /var/log/jobtory-bootstrap.log").stdout
        assert status != 0, output[-3000:]
        assert f"jobtory: {code['file']} ({code['key']}) sha256 mismatch" in output, output[-3000:]
        assert "bootstrap of" not in output
        left = host_exec(
            name,
            f"test ! -e /srv/jobtory/releases/{version} && test ! -e /srv/jobtory/current"
            " && ls -A /var/lib/jobtory/artifacts",
        )
        assert left.returncode == 0, f"the release was unpacked: {left.stdout}{left.stderr}"
        assert left.stdout.strip() == "", f"the artifacts dir holds {left.stdout!r}"

        # the store restored: the same user data boots the host, identical to its peers
        status, output = run_user_data(name, user_data, timeout=600)
        assert status == 0, output[-6000:]
        assert f"jobtory: {code['file']} fetched, sha256 verified" in output
        assert f"jobtory: bootstrap of {version} done" in output
        served = host_exec(
            name, f"curl -fsS {APP}/api/version && curl -fsS -o /dev/null http://127.0.0.1/healthz"
        )
        assert json.loads(served.stdout)["version"] == version
        same = (
            "readlink /srv/jobtory/current; stat -c '%a %U' /etc/jobtory/env; "
            "sha256sum /etc/jobtory/env /etc/jobtory/Caddyfile /etc/jobtory/aws.env "
            "/etc/systemd/system/jobtory-*.service /etc/systemd/system/jobtory-*.socket "
            "| cut -c1-64; "
            "systemctl is-active jobtory-gunicorn.socket jobtory-gunicorn jobtory-caddy; "
            "systemctl is-enabled jobtory-gunicorn.socket jobtory-gunicorn jobtory-caddy"
        )
        assert host_exec(name, same).stdout == host_exec("ec2-1", same).stdout
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
