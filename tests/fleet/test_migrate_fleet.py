"""`deploy.py migrate` end to end on the fleet replica, as a person runs it.

Before: both stand-in EC2 hosts run Caddy in direct mode (`deploy.py hosts --caddy-mode
direct`): HTTPS for jobtory.duckdns.org on each host (ec2-1's published on 127.0.0.1:9441,
where the DuckDNS name points), SSM holds the DuckDNS URLs, and the fleet's ALB stand-in
sees both targets unhealthy (port 80 only redirects). The command runs against the
replica's AWS emulator, reaches each host's Caddy admin socket through an SSH tunnel,
is killed after step 4, asked `--check`, and re-run: it resumes at step 5 and ends with
both hosts in alb mode behind the stand-in, on the new domain.

A bounded loop runs through all of it: on the old path (HTTPS straight to ec2-1, SNI and
Host the DuckDNS name) until the ALB stand-in reports a healthy target, then on the new
path (HTTPS through the stand-in, Host jobtory.localhost): users move when the new name
serves. Failures are counted on both paths. Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from jobtory_stack.aws import params, reconcile
from jobtory_stack.aws.core import Ctx, new_ctx
from jobtory_stack.aws.family import Teardown
from jobtory_stack.aws.plan import Plan
from jobtory_stack.caddy.admin import CaddyAdmin, config_mode
from jobtory_stack.errors import CaddyError, HostsError
from jobtory_stack.migrate.flow import ssm_values, with_mode
from jobtory_stack.spec.constants import HOST_CADDY_ADMIN
from jobtory_stack.spec.derived import derive
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment
from replica.fleet import FLEET_DIR, fleet_balancer, fleet_inventory
from tests.conftest import free_port
from tests.fleet.conftest import ALB_HTTPS, AWS_URL, ROOT, Fleet, host_exec, run_deploy
from tests.helpers import ON_THE_REPLICA_WORKER
from tests.migrate.conftest import URL_PARAMETERS, start_tagged_instance
from tests.request_loop import Path as LoopPath
from tests.request_loop import RequestLoop

pytestmark = [pytest.mark.fleet, ON_THE_REPLICA_WORKER, pytest.mark.timeout(1200)]

DUCKDNS = "jobtory.duckdns.org"
NEW_HOST = "jobtory.localhost"
OLD_HTTPS = int(os.environ.get("EC2_1_HTTPS_PORT", "9441"))
SSH_PORTS = {
    "ec2-1": int(os.environ.get("EC2_1_SSH_PORT", "2221")),
    "ec2-2": int(os.environ.get("EC2_2_SSH_PORT", "2222")),
}
ADMIN_SOCKET = HOST_CADDY_ADMIN.removeprefix("unix/").partition("|")[0]  # the path on a host
CADDY_CA = "/var/lib/jobtory-caddy/data/caddy/pki/authorities/local/root.crt"
SSH_OPTIONS = (
    "BatchMode=yes",
    "ExitOnForwardFailure=yes",
    "StrictHostKeyChecking=no",  # host keys are new with every re-created host
    "UserKnownHostsFile=/dev/null",
    "LogLevel=ERROR",
)


def local_env() -> Environment:
    return load_stack(ROOT / "stack.toml").env("local")


def emulator(env: Environment, mode: str = "alb") -> Ctx:
    """The reconcilers' context on the replica's emulator (its clients, dummy credentials)."""
    return new_ctx(with_mode(env, mode), AWS_URL, lambda line: None)


def reset_aws(env: Environment) -> None:
    """The emulator back to before the migration: no zone, certificate, ALB, ASG or VPC of
    env local (SSM stays: the replica's app needs it), no stand-in instances."""
    ctx = emulator(env)
    whole = reconcile.destroy_plan(ctx, Teardown(remove_deletion_protection=True))
    kept = ("database", "params")
    changes = [c for c in whole if reconcile.DESTROY_FAMILY[c.resource].name not in kept]
    reconcile.destroy(ctx, Plan(tuple(changes), whole.stack, whole.env))
    found = ctx.ec2.describe_instances(
        Filters=[
            {"Name": "tag:env", "Values": [env.name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    if ids:
        ctx.ec2.terminate_instances(InstanceIds=ids)


@pytest.fixture
def admin_tunnels(fleet: Fleet) -> Iterator[list[str]]:
    """`ssh -N -L 127.0.0.1:P:<Caddy's admin socket>` to each host, as the runbook says."""
    procs: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    try:
        for name, port in SSH_PORTS.items():
            local = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        *("ssh", "-N", "-p", str(port), "-i", str(FLEET_DIR / "id_ed25519")),
                        *(arg for option in SSH_OPTIONS for arg in ("-o", option)),
                        *("-L", f"127.0.0.1:{local}:{ADMIN_SOCKET}", "admin@127.0.0.1"),
                    ],
                    stdin=subprocess.DEVNULL,
                )
            )
            address = f"127.0.0.1:{local}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with CaddyAdmin(address) as admin:
                        assert config_mode(admin.config("")) == "direct", name
                    break
                except CaddyError:
                    if time.monotonic() > deadline or procs[-1].poll() is not None:
                        raise
                    time.sleep(0.3)
            addresses.append(address)
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def direct_fleet(fleet: Fleet) -> Iterator[Environment]:
    """Today's production on the fleet: SSM on the DuckDNS name, Caddy in direct mode."""
    env = local_env()
    reset_aws(env)
    params.sync(emulator(env, "direct"))
    ctx = emulator(env)
    for name in SSH_PORTS:  # ec2-1 and ec2-2 as the emulator knows them
        start_tagged_instance(ctx.ec2, env, name)
    balancer = fleet_balancer()
    for target in fleet_inventory()[0]:  # put back what earlier tests may have drained
        balancer.restore(target.lb_target, timeout=0)
    result = run_deploy("--caddy-mode", "direct")
    assert result.code == 0, result.output
    deadline = time.monotonic() + 90  # the stand-in's checks now get redirects: unhealthy
    while "healthy" in balancer.health().values():
        assert time.monotonic() < deadline, balancer.health()
        time.sleep(0.5)
    yield env
    reset_aws(env)  # SSM stays on the new domain: the spec's local values


# ---- the request loop ------------------------------------------------------------------------


class FleetLoop(RequestLoop):
    """tests/request_loop.py's loop (<= 600 s, <= 60000 requests): `old` = HTTPS straight
    to ec2-1 (SNI and Host the DuckDNS name, its Caddy's CA), `new` = HTTPS through the
    fleet's ALB stand-in (Host jobtory.localhost). The switch comes when the stand-in
    reports a healthy target: users move to the new name once it serves. With two hosts
    migrate drains each for its final reload, so the ALB's 502 on an empty response must
    not happen here."""

    def __init__(self, old_ca: Path) -> None:
        super().__init__(
            old=LoopPath(OLD_HTTPS, DUCKDNS, ssl.create_default_context(cafile=str(old_ca))),
            new=LoopPath(ALB_HTTPS, NEW_HOST, False),  # the fleet stand-in's own CA
            url_path="/api/version",
            ok=lambda r: "version" in r.json(),
            max_seconds=600,
            budget=60000,
        )
        self.threads.append(threading.Thread(target=self.watch))

    def watch(self) -> None:
        balancer = fleet_balancer()
        end = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                serving = "healthy" in balancer.health().values()
            except HostsError:
                serving = False
            if serving:
                self.switch()
                return
            time.sleep(0.2)


# ---- the command ------------------------------------------------------------------------------


def migrate(*args: str, kill_after_step: int | None = None) -> tuple[int, str]:
    """`deploy.py migrate --env local ARGS`; SIGKILL once step `kill_after_step` is ok."""
    proc = subprocess.Popen(
        [sys.executable, "deploy.py", "migrate", "--env", "local", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": AWS_URL, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    step = 0
    deadline = time.monotonic() + 900
    for line in proc.stdout:
        lines.append(line)
        print(line, end="")
        if line.startswith("step "):
            step = int(line.split()[1].split("/")[0])
        if kill_after_step == step and line.startswith("  ok"):
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            break
    proc.wait(timeout=60)
    return proc.returncode, "".join(lines)


def check_table(output: str) -> dict[int, str]:
    """`--check` output -> {step: done|todo|manual}."""
    table: dict[int, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit() and len(parts) > 2:
            label = next(p for p in parts[1:] if p in ("done", "todo", "manual"))
            table[int(parts[0])] = label
    return table


def redirect_uri(response: httpx.Response) -> str:
    assert response.status_code == 302, (response.status_code, response.text[:300])
    return parse_qs(urlsplit(response.headers["location"]).query)["redirect_uri"][0]


def test_migrate_moves_the_fleet_from_duckdns_to_the_alb_with_no_failed_request(
    direct_fleet: Environment, admin_tunnels: list[str], tmp_path: Path
) -> None:
    env = direct_fleet
    old, new = derive(with_mode(env, "direct")), derive(with_mode(env, "alb"))
    ca = tmp_path / "ec2-1-caddy-ca.pem"
    got = host_exec("ec2-1", f"cat {CADDY_CA}")
    assert got.returncode == 0, got.stderr
    ca.write_text(got.stdout)

    # before: the DuckDNS name is served by the host itself, the ALB serves nothing
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as client:
        r = client.get(
            f"https://127.0.0.1:{OLD_HTTPS}/auth/google/login",
            headers={"Host": f"{DUCKDNS}:8443"},  # the replica's URLs carry the ALB's port
            extensions={"sni_hostname": DUCKDNS},
        )
    assert redirect_uri(r) == old.parameters["GOOGLE_REDIRECT_URI"]
    assert "healthy" not in fleet_balancer().health().values()
    admins = [a for address in admin_tunnels for a in ("--caddy-admin", address)]
    code, before = migrate("--check", *admins)
    assert code == 0, before
    assert check_table(before) == {1: "done", 2: "todo", 3: "todo", 4: "todo", 5: "todo",
                                   6: "todo", 7: "todo", 8: "manual"}, before  # fmt: skip

    loop = FleetLoop(ca)
    loop.start()
    try:
        loop_started = time.monotonic()
        # the first run dies right after step 4 (SIGKILL: no clean-up, no state written)
        code, first = migrate(*admins, "--wait-timeout", "240", kill_after_step=4)
        assert code == -signal.SIGKILL, first
        code, between = migrate("--check", *admins)
        table = check_table(between)
        assert table == {1: "done", 2: "done", 3: "done", 4: "done", 5: "todo",
                         6: "todo", 7: "todo", 8: "manual"}, between  # fmt: skip
        assert "next: step 5" in between
        code, second = migrate(*admins, "--wait-timeout", "240")
        assert code == 0, second
        assert "resuming at step 5" in second
        loop_seconds = time.monotonic() - loop_started
        time.sleep(3)  # a few seconds of the new path after the end
    finally:
        loop.finish()
    print(
        f"loop: {loop.total} requests in {loop_seconds:.0f}s {dict(loop.results)}; "
        f"retried {loop.retries}; ALB 502 on an empty response: {loop.alb_empty}; "
        f"failures {loop.failures[:5]}"
    )
    assert not loop.failures, loop.failures[:10]
    assert loop.alb_empty == 0  # two hosts: each is drained for its final reload
    assert loop.retries <= max(5, loop.total // 50)
    assert loop.count("old") > 50 and loop.count("new") > 50, dict(loop.results)

    code, after = migrate("--check", *admins)
    assert check_table(after) == {i: "done" for i in range(1, 8)} | {8: "manual"}, after
    # SSM: every derived value on the new domain
    values = ssm_values(emulator(env), URL_PARAMETERS)
    for name in URL_PARAMETERS:
        assert values[name][0] == new.parameters[name], name
    # the hosts run (and boot into) alb mode
    for name in SSH_PORTS:
        caddyfile = host_exec(name, "cat /etc/jobtory/Caddyfile").stdout
        assert "mode alb" in caddyfile and DUCKDNS not in caddyfile, name
    # HTTPS through the ALB stand-in; the sign-in redirects to the new callback
    with httpx.Client(verify=False, timeout=10) as client:  # the fleet CA
        url = f"https://127.0.0.1:{ALB_HTTPS}"
        r = client.get(f"{url}/auth/google/login", headers={"Host": f"{NEW_HOST}:8443"})
        assert redirect_uri(r) == new.parameters["GOOGLE_REDIRECT_URI"]
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["client_id"] == [new.parameters["GOOGLE_CLIENT_ID"]]
        r = client.get(f"{url}/api/version", headers={"Host": DUCKDNS})
        assert r.status_code == 400  # the old name is no longer an allowed host
    # the old path is gone: the hosts no longer answer HTTPS
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=False, timeout=5) as client:
        client.get(f"https://127.0.0.1:{OLD_HTTPS}/healthz", extensions={"sni_hostname": DUCKDNS})
