"""The host deploy's parts that need no Docker: lock + audit (against moto), artifacts,
pyinfra runs and their results (real pyinfra against @local), user data.

No Docker and no hosts: these run everywhere (no `fleet` marker).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from jobtory_stack.errors import HostsError
from jobtory_stack.hosts import rolling, runner
from jobtory_stack.hosts.balancers import ElbBalancer
from jobtory_stack.hosts.inventory import Target, ec2_inventory
from jobtory_stack.hosts.lock import (
    AuditRecord,
    DeployLock,
    LockHeld,
    append_audit,
    force_unlock,
    parameter_names,
    read_audit,
)
from jobtory_stack.hosts.release import deterministic_tar
from jobtory_stack.hosts.requirements import for_python
from jobtory_stack.hosts.rolling import DeployReport
from jobtory_stack.hosts.runner import PYINFRA_DIR, read_result, run_pyinfra
from jobtory_stack.hosts.settings import HostSettings, Manifest, check_version
from jobtory_stack.render.user_data import render_user_data
from jobtory_stack.spec.loader import load_stack
from tests.conftest import free_port
from tests.helpers import ROOT


@pytest.fixture
def ssm(aws_env: str) -> Any:
    return boto3.client("ssm", region_name="ap-northeast-2")


def test_lock_names_live_outside_the_env_prefix() -> None:
    lock, audit = parameter_names("jobtory", "prod")
    assert lock == "/jobtory/_deploy/prod/lock" and audit == "/jobtory/_deploy/prod/audit"
    assert not lock.startswith("/jobtory/prod/")  # ssm_env.load_env never sees them


def test_second_lock_refuses_and_names_the_holder(ssm: Any) -> None:
    name, _ = parameter_names("jobtory", "local")
    first = DeployLock(ssm, name, "v1", owner="alice@laptop pid 7")
    first.acquire()
    second = DeployLock(ssm, name, "v2", owner="bob@ci pid 9")
    with pytest.raises(LockHeld) as err:
        second.acquire()
    assert "alice@laptop pid 7" in str(err.value) and "version v1" in str(err.value)
    first.release()
    second.acquire()  # free again
    second.release()
    assert second.holder() is None


def test_release_never_removes_someone_elses_lock(ssm: Any) -> None:
    name, _ = parameter_names("jobtory", "local")
    mine = DeployLock(ssm, name, "v1", owner="me")
    mine.acquire()
    force_unlock(ssm, name)
    theirs = DeployLock(ssm, name, "v2", owner="them")
    theirs.acquire()
    mine.release()
    holder = theirs.holder()
    assert holder is not None and holder.owner == "them"


def test_stale_lock_is_taken_over(ssm: Any) -> None:
    name, _ = parameter_names("jobtory", "local")
    old = DeployLock(ssm, name, "v0", owner="crashed")
    old.acquire()
    info = json.loads(old.info.to_json())
    info["since"] = time.time() - 7200
    del info["heartbeat"]  # an older deployer's lock: its age is `since`
    ssm.put_parameter(Name=name, Value=json.dumps(info), Type="String", Overwrite=True)
    fresh = DeployLock(ssm, name, "v1", owner="new", stale_after=600)
    replaced = fresh.acquire()
    assert replaced is not None and replaced.owner == "crashed"
    holder = fresh.holder()
    assert holder is not None and holder.owner == "new"


def test_audit_keeps_one_line_per_deploy(ssm: Any) -> None:
    _, name = parameter_names("jobtory", "local")
    for i, result in enumerate(["ok", "no change", "failed: ec2-1: readyz"]):
        append_audit(
            ssm,
            name,
            AuditRecord(
                who="alice@laptop pid 1",
                env="local",
                version=f"v{i}",
                started="2026-01-01T00:00:00Z",
                seconds=1.5,
                result=result,
                hosts=["ec2-1"],
                changed_operations=i,
            ),
        )
    lines = read_audit(ssm, name)
    assert [line["version"] for line in lines] == ["v0", "v1", "v2"]
    assert lines[2]["result"].startswith("failed") and lines[0]["who"] == "alice@laptop pid 1"


def test_deterministic_tar_same_bytes_for_same_content(tmp_path: Path) -> None:
    members = [("b.txt", b"two", 0o644), ("a/run.sh", b"#!/bin/sh\n", 0o755)]
    one = deterministic_tar(tmp_path / "one.tar.gz", members, compress=True)
    time.sleep(1.1)
    two = deterministic_tar(tmp_path / "two.tar.gz", list(reversed(members)), compress=True)
    assert one == two
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        names = tar.getnames()
        assert names == ["a/run.sh", "b.txt"]
        assert tar.getmember("a/run.sh").mode == 0o755 and tar.getmember("b.txt").mtime == 0


def test_requirements_are_reduced_for_the_hosts_python() -> None:
    exported = (
        "django==5.2.19 ; python_full_version < '3.12' \\\n"
        "    --hash=sha256:aaa\n"
        "django==6.1.3 ; python_full_version >= '3.12' \\\n"
        "    --hash=sha256:bbb\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n"
        "    --hash=sha256:ccc\n"
        "idna==3.10 \\\n"
        "    --hash=sha256:ddd\n"
    )
    out = for_python(exported, "3.13")
    assert "django==6.1.3 \\\n    --hash=sha256:bbb" in out
    assert "5.2.19" not in out and "colorama" not in out and "idna==3.10" in out


# ---- running pyinfra: the result is read from pyinfra's state, never from its text ----

TINY_DEPLOY = """\
from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server

root = host.data.get("root")
files.directory(name="a directory", path=f"{root}/d")
files.put(name="a file", src=StringIO("hello\\n"), dest=f"{root}/d/hello.txt")
files.link(name="a link", path=f"{root}/d/link", target=f"{root}/d/hello.txt")
if host.data.get("fail"):
    server.shell(
        name="a step that fails",
        commands=["echo 'jobtory: step x failed on purpose' >&2; exit 3"],
    )
if host.data.get("tolerated"):
    server.shell(name="a failure tolerated", commands=["exit 1"], _ignore_errors=True)
if host.data.get("broken"):
    raise RuntimeError("the deploy file is broken")
"""


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Any]:
    """A three-operation deploy file and an inventory of @local (this machine, no SSH)."""
    (tmp_path / "deploy.py").write_text(TINY_DEPLOY)
    (tmp_path / "inventory.py").write_text('hosts = ["@local"]\n')
    (tmp_path / "root").mkdir()
    return {
        "inventory": tmp_path / "inventory.py",
        "host": "@local",
        "deploy_file": tmp_path / "deploy.py",
        "log_dir": tmp_path / "logs",
        "timeout": 120,
    }


def _data(tiny: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"root": str(tiny["inventory"].parent / "root"), **extra}


def test_plan_and_deploy_count_the_changed_operations_of_a_real_pyinfra_run(
    tiny: dict[str, Any],
) -> None:
    plan = run_pyinfra(data=_data(tiny), dry=True, **tiny)
    assert plan.ok and plan.changed == 3, plan
    assert plan.operations == ("a directory", "a file", "a link")
    assert not (tiny["inventory"].parent / "root" / "d").exists()  # a plan changes nothing
    assert "a directory" in plan.log.read_text()  # pyinfra's own output is kept in the log
    run = run_pyinfra(data=_data(tiny), **tiny)
    assert run.ok and run.changed == 3 and run.reasons == (), run
    assert (tiny["inventory"].parent / "root" / "d" / "hello.txt").read_text() == "hello\n"
    again = run_pyinfra(data=_data(tiny), dry=True, **tiny)
    assert again.ok and again.changed == 0 and again.operations == ()
    assert run_pyinfra(data=_data(tiny), **tiny).changed == 0


def test_one_process_plans_then_executes_that_plan_or_ends_changing_nothing(
    tiny: dict[str, Any],
) -> None:
    """HostRun: the plan, a pause (the deployer drains the host), then "go" executes the
    prepared state; close() instead ends the process with nothing changed."""
    d = tiny["inventory"].parent / "root" / "d"
    options = {k: v for k, v in tiny.items() if k != "host"}
    stopped = runner.HostRun(host="@local", data=_data(tiny), **options)
    plan = stopped.plan()
    assert plan.ok and plan.operations == ("a directory", "a file", "a link"), plan
    stopped.close()
    assert not d.exists() and not stopped.result.exists()  # ended without executing
    run = runner.HostRun(host="@local", data=_data(tiny), **options)
    assert run.plan().changed == 3 and not d.exists()  # planned, waiting: nothing yet
    done = run.deploy()
    assert done.ok and done.changed == 3 and (d / "hello.txt").read_text() == "hello\n"
    assert "a directory" in done.log.read_text()  # plan and execution: one log
    again = runner.HostRun(host="@local", data=_data(tiny), **options)
    assert again.plan().changed == 0
    again.close()


def test_a_failed_plan_ends_its_process(tiny: dict[str, Any]) -> None:
    options = {k: v for k, v in tiny.items() if k != "host"}
    run = runner.HostRun(host="@local", data=_data(tiny, broken="1"), **options)
    plan = run.plan()
    assert not plan.ok and any("the deploy file is broken" in r for r in plan.reasons)
    assert run._proc is not None and run._proc.poll() is not None


def test_a_failed_operation_quotes_the_hosts_reason(tiny: dict[str, Any]) -> None:
    run = run_pyinfra(data=_data(tiny, fail="1"), **tiny)
    assert not run.ok
    assert run.reasons == ("jobtory: step x failed on purpose",)
    assert run.changed == 3  # what changed before the failure


def test_an_operation_whose_errors_are_ignored_fails_nothing(tiny: dict[str, Any]) -> None:
    run = run_pyinfra(data=_data(tiny, tolerated="1"), **tiny)
    assert run.ok and run.reasons == () and run.changed == 3, run


def test_a_broken_deploy_file_fails_the_plan_with_its_error(tiny: dict[str, Any]) -> None:
    plan = run_pyinfra(data=_data(tiny, broken="1"), dry=True, **tiny)
    assert not plan.ok
    assert any("RuntimeError: the deploy file is broken" in r for r in plan.reasons), plan
    assert "Traceback" in plan.log.read_text()


def test_a_host_that_cannot_be_reached_fails_naming_it(tiny: dict[str, Any]) -> None:
    port = free_port()  # nothing listens there
    tiny["inventory"].write_text(
        f'hosts = [("ec2-9", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}})]\n'
    )
    plan = run_pyinfra(data=_data(tiny), dry=True, **{**tiny, "host": "ec2-9"})
    assert not plan.ok and plan.changed == 0
    assert plan.reasons[0].startswith("could not connect to ec2-9"), plan.reasons


def test_a_run_that_leaves_no_result_is_an_error_naming_the_log(
    tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "CHILD", "this")  # exits 0, writes no result
    with pytest.raises(HostsError, match=r"left no result; see .*hosts-.*@local-plan\.log"):
        run_pyinfra(data=_data(tiny), dry=True, **tiny)


def test_a_timed_out_run_fails_with_the_reason(tiny: dict[str, Any]) -> None:
    run = run_pyinfra(data=_data(tiny), **{**tiny, "timeout": 0.01})
    assert not run.ok and run.reasons == ("jobtory: pyinfra timed out after 0s",)
    assert "timed out" in run.log.read_text()


GOOD = {"host": "ec2-1", "dry": False, "ok": True, "changed": ["a", "b"], "reasons": []}


@pytest.mark.parametrize(
    "text",
    [
        None,  # no file
        "",
        "Grand total 30 13 - 17",
        "[]",
        json.dumps({**GOOD, "host": "ec2-2"}),  # another host's
        json.dumps({**GOOD, "dry": True}),  # a plan's
        json.dumps({**GOOD, "changed": 2}),
        json.dumps({**GOOD, "ok": "yes"}),
        json.dumps({**GOOD, "ok": False}),  # failed without a reason
        json.dumps({k: v for k, v in GOOD.items() if k != "changed"}),
    ],
)
def test_an_unreadable_result_is_an_error_never_no_change(tmp_path: Path, text: str | None) -> None:
    result, log = tmp_path / "r.json", tmp_path / "hosts-x-ec2-1.log"
    if text is not None:
        result.write_text(text)
    with pytest.raises(HostsError, match=re.escape(str(log))):
        read_result(result, "ec2-1", False, log)


def test_a_readable_result_is_read_as_written(tmp_path: Path) -> None:
    result = tmp_path / "r.json"
    result.write_text(json.dumps(GOOD))
    assert read_result(result, "ec2-1", False, tmp_path / "x.log") == (True, ["a", "b"], [])
    failed = {**GOOD, "ok": False, "reasons": ["jobtory: release v2 failed /readyz"]}
    result.write_text(json.dumps(failed))
    assert read_result(result, "ec2-1", False, tmp_path / "x.log")[0] is False


@pytest.mark.parametrize("bad", ["", "../x", "v 1", "v1/2", "-v1", "x" * 65, "v1+git"])
def test_versions_name_a_directory_and_a_unit(bad: str) -> None:
    with pytest.raises(HostsError):
        check_version(bad)


def test_user_data_is_valid_bash_and_runs_the_same_deploy_against_local() -> None:
    script = render_user_data(
        "prod",
        "v42",
        bucket="jobtory-prod-releases-123456789012",
        region="ap-northeast-2",
        manifest_sha256="0" * 64,
        aws_env={"AWS_ENDPOINT_URL": "http://aws:4566"},
    )
    assert script.startswith("#!/bin/bash")
    assert "@local pyinfra/deploy.py" in script and "VERSION=v42" in script
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_host_settings_from_pyinfra_data(tmp_path: Path) -> None:
    manifest = Manifest("v1", "src-v1.tar.gz", "0" * 64, "wheels-abc.tar", "abc")
    manifest.save(tmp_path)
    data = {
        "jobtory_env": "local",
        "jobtory_version": "v1",
        "jobtory_artifacts": str(tmp_path),
        "jobtory_aws_env": "AWS_ENDPOINT_URL=http://aws:4566",
    }
    s = HostSettings.from_host_data(data, deploy_dir=PYINFRA_DIR)
    assert s.ssm_prefix == "/jobtory/local/"
    assert s.release_dir == "/srv/jobtory/releases/v1"
    assert s.wheels_dir == "/srv/jobtory/wheels/abc"
    assert "AWS_ENDPOINT_URL=http://aws:4566" in s.aws_env_text
    assert "AWS_SECRET" not in s.aws_env_text
    # alb mode: plain :80, the spec's trusted proxies, gunicorn on the host's loopback
    assert "127.0.0.1:8000" in s.caddyfile_text
    assert "172.30.0.0/24" in s.caddyfile_text
    assert "/srv/jobtory/current/app/frontend" in s.caddyfile_text


def test_ec2_inventory_from_tags_and_asg_membership(aws_env: str) -> None:
    ec2 = boto3.client("ec2", region_name="ap-northeast-2")
    asg = boto3.client("autoscaling", region_name="ap-northeast-2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def launch(tags: dict[str, str]) -> str:
        spec = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        out = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=spec)
        return str(out["Instances"][0]["InstanceId"])

    loose = launch({"stack": "jobtory", "env": "staging"})
    member = launch({"stack": "jobtory", "env": "staging"})
    launch({"stack": "jobtory", "env": "prod"})  # another environment: not ours
    launch({"stack": "other", "env": "staging"})  # another stack: not ours
    ec2.create_launch_template(
        LaunchTemplateName="jobtory-staging-lt", LaunchTemplateData={"ImageId": ami}
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="jobtory-staging-asg",
        LaunchTemplate={"LaunchTemplateName": "jobtory-staging-lt"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        AvailabilityZones=["ap-northeast-2a"],
    )
    asg.attach_instances(AutoScalingGroupName="jobtory-staging-asg", InstanceIds=[member])
    found = ec2_inventory(load_stack(ROOT / "stack.toml").env("staging"))
    names = [name for name, _ in found]
    assert names[0] == member and set(names) == {member, loose}  # ASG members first
    data = dict(found)[member]
    assert data["asg_member"] is True and data["lb_target"] == member and data["_sudo"] is True
    assert data["ssh_hostname"]  # the private IP (JOBTORY_SSH_VIA=public: the public one)


def test_elb_balancer_drains_and_restores_a_target(aws_env: str) -> None:
    ec2 = boto3.client("ec2", region_name="ap-northeast-2")
    elbv2 = boto3.client("elbv2", region_name="ap-northeast-2")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    arn = elbv2.create_target_group(
        Name="jobtory-staging-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance, "Port": 80}])
    balancer = ElbBalancer(elbv2, arn)
    assert balancer.healthy(instance)  # moto: every registered target is healthy (pitfall!)
    balancer.drain(instance)
    assert not balancer.healthy(instance)
    balancer.restore(instance, timeout=30)
    assert balancer.healthy(instance)


# ---- rolling-deploy safety: heartbeat, never the last healthy target, put back always ----


def test_a_running_deploy_keeps_its_lock_past_the_timeout(ssm: Any) -> None:
    """The heartbeat, not the age, makes a lock stale: a live deploy keeps it; one whose
    heartbeat stopped (a crashed deployer) is taken over."""
    name, _ = parameter_names("jobtory", "local")
    running = DeployLock(ssm, name, "v1", stale_after=1.2, owner="long deploy")
    with running:
        assert running.every == pytest.approx(0.4)
        time.sleep(2.0)  # past the timeout, the heartbeat renewed it
        with pytest.raises(LockHeld, match="long deploy"):
            DeployLock(ssm, name, "v2", stale_after=1.2, owner="second").acquire()
        running.stop_heartbeat()  # the deployer hangs or dies: no heartbeat any more
        second = DeployLock(ssm, name, "v2", stale_after=1.2, owner="second")
        deadline = time.monotonic() + 5
        while True:
            try:
                replaced = second.acquire()
                break
            except LockHeld:
                assert time.monotonic() < deadline, "a lock without heartbeat stays held"
                time.sleep(0.2)
        assert replaced is not None and replaced.owner == "long deploy"
        assert running.beat() is False and running.lost and "second" in running.lost
        with pytest.raises(HostsError, match="held by second"):
            running.check()  # the deploy stops before its next host
    holder = second.holder()  # leaving the block never removed the new holder's lock
    assert holder is not None and holder.owner == "second"


class FakeBalancer:
    """A balancer whose targets' health the test sets; it records drains and restores."""

    name = "fake balancer"

    def __init__(self, health: dict[str, str], on_restore: Any = None) -> None:
        self.states = dict(health)
        self.calls: list[tuple[str, str, float]] = []
        self.on_restore = on_restore

    def health(self) -> dict[str, str]:
        return dict(self.states)

    def healthy(self, target: str) -> bool:
        return self.states.get(target) == "healthy"

    def drain(self, target: str) -> None:
        self.calls.append(("drain", target, 0))
        self.states[target] = "unused"

    def restore(self, target: str, timeout: float) -> None:
        if self.on_restore is not None:
            self.on_restore()
        self.calls.append(("restore", target, timeout))
        self.states[target] = "healthy"


class FakeRun:
    """A host's pyinfra process: a plan with one change; deploy() does `action`."""

    runs: ClassVar[dict[str, FakeRun]] = {}
    action: ClassVar[Any] = None

    def __init__(self, inventory: Path, host: str, data: Any, env: Any = None) -> None:
        self.host, self.closed, self.deployed = host, False, False
        FakeRun.runs[host] = self

    def plan(self) -> runner.RunResult:
        return runner.RunResult(True, 1, 0.0, (), Path("plan.log"), ("op",))

    def deploy(self) -> runner.RunResult:
        self.deployed = True
        if FakeRun.action is not None:
            FakeRun.action()
        return runner.RunResult(True, 1, 0.0, (), Path("run.log"), ("op",))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> type[FakeRun]:
    FakeRun.runs, FakeRun.action = {}, None
    monkeypatch.setattr(rolling, "HostRun", FakeRun)
    return FakeRun


def roll(balancer: Any, hosts: list[str], **kwargs: Any) -> tuple[DeployReport, list[str]]:
    lines: list[str] = []
    report = DeployReport("local", "v2")
    targets = [Target(h, h) for h in hosts]
    try:
        rolling.rolling_deploy(
            targets, balancer, Path("inv.py"), {}, report, lines.append, **kwargs
        )
    finally:
        report.seconds = 0
    return report, lines


def signal_self(sig: int) -> None:
    """Deliver `sig` to this process and let Python run its handler (main thread)."""
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
    raise AssertionError(f"signal {sig} was not turned into an exception")


main_thread_only = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers run in the main thread only",
)


@main_thread_only
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_deploy_puts_the_drained_host_back(
    fake_runs: type[FakeRun], sig: int
) -> None:
    """Ctrl-C or SIGTERM while a host executes: that host goes back in the balancer, the
    next host is neither drained nor deployed, every pyinfra process is ended."""
    balancer = FakeBalancer({"ec2-1": "healthy", "ec2-2": "healthy"})
    fake_runs.action = lambda: signal_self(sig)
    with rolling.sigterm_interrupts(), pytest.raises(KeyboardInterrupt):
        roll(balancer, ["ec2-1", "ec2-2"])
    assert balancer.calls == [("drain", "ec2-1", 0), ("restore", "ec2-1", 0)]
    assert balancer.states == {"ec2-1": "healthy", "ec2-2": "healthy"}
    assert fake_runs.runs["ec2-1"].deployed and not fake_runs.runs["ec2-2"].deployed
    assert all(run.closed for run in fake_runs.runs.values())
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back


@main_thread_only
def test_a_second_ctrl_c_waits_until_the_host_is_back(fake_runs: type[FakeRun]) -> None:
    sent: list[int] = []

    def ctrl_c_again() -> None:
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # held: the restore goes on

    balancer = FakeBalancer({"ec2-1": "healthy", "ec2-2": "healthy"}, on_restore=ctrl_c_again)
    fake_runs.action = lambda: signal_self(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        roll(balancer, ["ec2-1", "ec2-2"])
    assert sent and balancer.calls[-1] == ("restore", "ec2-1", 0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_failing_balancer_call_still_puts_the_host_back(fake_runs: type[FakeRun]) -> None:
    """An error after the drain (here: the host's deploy dies with an AWS error) puts the
    host back before it propagates."""

    def aws_down() -> None:
        raise HostsError("describe_target_health failed")

    balancer = FakeBalancer({"ec2-1": "healthy", "ec2-2": "healthy"})
    fake_runs.action = aws_down
    with pytest.raises(HostsError):
        roll(balancer, ["ec2-1", "ec2-2"])
    assert ("restore", "ec2-1", 180.0) in balancer.calls  # a failed deploy: waited for
    assert not any(call[1] == "ec2-2" for call in balancer.calls)


@pytest.mark.parametrize(
    ("health", "allow", "refused"),
    [
        ({"ec2-1": "healthy", "ec2-2": "unhealthy"}, False, "others: ec2-2 unhealthy"),
        ({"ec2-1": "healthy", "ec2-2": "draining"}, True, "others: ec2-2 draining"),
        ({"ec2-1": "healthy"}, False, "--allow-downtime"),
        ({"ec2-1": "healthy"}, True, None),  # a single host, downtime asked for
        ({"ec2-1": "initial", "ec2-2": "unhealthy"}, False, None),  # not serving: fine
        ({"ec2-1": "healthy", "ec2-2": "healthy"}, False, None),
    ],
    ids=["other-unhealthy", "other-draining", "alone", "alone-allowed", "fresh", "two-healthy"],
)
def test_the_last_healthy_target_is_never_drained(
    fake_runs: type[FakeRun], health: dict[str, str], allow: bool, refused: str | None
) -> None:
    balancer = FakeBalancer(health)
    if refused is None:
        report, lines = roll(balancer, ["ec2-1"], allow_downtime=allow)
        assert report.hosts[0].result == "ok" and balancer.calls[0] == ("drain", "ec2-1", 0)
        assert ("DOWNTIME" in "\n".join(lines)) is (len(health) == 1)
        return
    with pytest.raises(HostsError, match="only healthy target") as caught:
        roll(balancer, ["ec2-1"], allow_downtime=allow)
    assert refused in str(caught.value)
    assert balancer.calls == [] and not fake_runs.runs["ec2-1"].deployed


# ---- EC2: instances not in service, draining through the Auto Scaling group's standby ----


def asg_fleet(min_size: int, desired: int) -> tuple[Any, Any, str, list[str]]:
    """A target group and an ASG attached to it (as `apply` makes them), in moto."""
    ec2 = boto3.client("ec2", region_name="ap-northeast-2")
    elbv2 = boto3.client("elbv2", region_name="ap-northeast-2")
    asg = boto3.client("autoscaling", region_name="ap-northeast-2")
    vpc = ec2.create_vpc(CidrBlock="10.31.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.31.1.0/24", AvailabilityZone="ap-northeast-2a"
    )["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    arn = elbv2.create_target_group(
        Name="jobtory-staging-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    ec2.create_launch_template(
        LaunchTemplateName="jobtory-staging-lt", LaunchTemplateData={"ImageId": ami}
    )
    tags = [
        {"Key": k, "Value": v, "PropagateAtLaunch": True}
        for k, v in {"stack": "jobtory", "env": "staging"}.items()
    ]
    asg.create_auto_scaling_group(
        AutoScalingGroupName="jobtory-staging-asg",
        LaunchTemplate={"LaunchTemplateName": "jobtory-staging-lt"},
        MinSize=min_size,
        MaxSize=4,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet,
        TargetGroupARNs=[arn],
        HealthCheckType="ELB",
        Tags=tags,
    )
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["jobtory-staging-asg"])
    ids = sorted(i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"])
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": 80} for i in ids])
    return elbv2, asg, arn, ids


def group_of(asg: Any) -> dict[str, Any]:
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["jobtory-staging-asg"])
    return dict(found["AutoScalingGroups"][0])


def lifecycle(asg: Any, instance: str) -> str:
    found = asg.describe_auto_scaling_instances(InstanceIds=[instance])
    return str(found["AutoScalingInstances"][0]["LifecycleState"])


def test_instances_not_in_service_are_skipped_and_named(aws_env: str) -> None:
    _, asg, _, (first, second) = asg_fleet(min_size=1, desired=2)
    asg.enter_standby(
        AutoScalingGroupName="jobtory-staging-asg",
        InstanceIds=[second],
        ShouldDecrementDesiredCapacity=True,
    )
    skipped: list[tuple[str, str]] = []
    found = ec2_inventory(load_stack(ROOT / "stack.toml").env("staging"), skipped)
    assert [name for name, _ in found] == [first]
    assert skipped == [(second, "Standby")]


@pytest.mark.parametrize("min_size", [1, 2], ids=["min-below-desired", "min-equals-desired"])
def test_an_asg_member_is_drained_through_standby_and_put_back(aws_env: str, min_size: int) -> None:
    """AWS's way to update an instance in place: standby with the desired capacity
    decremented (no replacement launched); MinSize lowered for it only when min =
    desired (AWS refuses the decrement below MinSize), and put back after."""
    elbv2, asg, arn, (first, _) = asg_fleet(min_size=min_size, desired=2)
    lines: list[str] = []
    balancer = ElbBalancer(elbv2, arn, autoscaling=asg, say=lines.append)
    balancer.drain(first)
    group = group_of(asg)
    assert lifecycle(asg, first) == "Standby" and group["DesiredCapacity"] == 1
    assert group["MinSize"] == 1 and group["MinSize"] <= group["DesiredCapacity"]
    assert not balancer.healthy(first)
    assert ("MinSize 1 while it is on standby" in " ".join(lines)) is (min_size == 2)
    balancer.restore(first, timeout=30)
    group = group_of(asg)
    assert lifecycle(asg, first) == "InService"
    assert (group["MinSize"], group["DesiredCapacity"]) == (min_size, 2)
    assert balancer.healthy(first) and balancer.drained == {}


def test_a_drain_interrupted_after_lowering_min_size_is_undone(aws_env: str) -> None:
    """Each step of the drain is recorded before it is asked for: an interruption
    between lowering MinSize and EnterStandby still gets MinSize back."""
    elbv2, asg, arn, (first, _) = asg_fleet(min_size=2, desired=2)

    class Interrupted:
        def __getattr__(self, name: str) -> Any:
            if name == "enter_standby":
                raise KeyboardInterrupt
            return getattr(asg, name)

    balancer = ElbBalancer(elbv2, arn, autoscaling=Interrupted())
    with pytest.raises(KeyboardInterrupt):
        balancer.drain(first)
    assert group_of(asg)["MinSize"] == 1
    balancer.restore(first, timeout=0)
    assert group_of(asg)["MinSize"] == 2 and lifecycle(asg, first) == "InService"
