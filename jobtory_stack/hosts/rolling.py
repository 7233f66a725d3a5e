"""`deploy.py hosts`: the rolling deploy of a release to an environment's hosts.

First every host's plan (pyinfra's diff, side by side: a plan changes nothing); each
host's pyinfra process then waits with its prepared state. Then one host at a time:
nothing to change -> leave the host alone; else take it out of the load balancer
(drain), execute its plan (pyinfra/deploy.py), put it back and wait until the
balancer's health checks pass, then the next host. A deploy lock in SSM (hosts.lock,
renewed by a heartbeat) keeps two deploys apart; every deploy appends one audit line
there. Safety: whatever the drain changed is undone in a `finally` (errors, Ctrl-C,
SIGTERM); the only healthy target is never drained; docs/hosts.md "Safety".

Docs: docs/hosts.md. The pyinfra side (facts, operations, tasks): pyinfra/.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jobtory_stack.aws.client import aws_errors, client_for, explain
from jobtory_stack.errors import HostsError, JobtoryError
from jobtory_stack.hosts.balancers import Balancer, NoBalancer, balancer_for
from jobtory_stack.hosts.inventory import Target, ec2_inventory, static_inventory
from jobtory_stack.hosts.launch import move_launch_template
from jobtory_stack.hosts.lock import (
    AuditRecord,
    DeployLock,
    append_audit,
    parameter_names,
    whoami,
)
from jobtory_stack.hosts.release import build_release, default_version
from jobtory_stack.hosts.runner import PYINFRA_DIR, HostRun, RunResult
from jobtory_stack.hosts.settings import (
    ARTIFACTS_DIR,
    REPO,
    DeployOptions,
    check_version,
    db_ca_bundle,
)
from jobtory_stack.spec.model import Environment
from jobtory_stack.ssm_env import load_env, render_env_file


@dataclass
class HostOutcome:
    name: str
    planned: int = 0
    changed: int = 0
    seconds: float = 0.0
    result: str = "pending"


@dataclass
class DeployReport:
    env: str
    version: str
    hosts: list[HostOutcome] = field(default_factory=list)
    seconds: float = 0.0
    result: str = "pending"

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "version": self.version,
            "result": self.result,
            "seconds": round(self.seconds, 2),
            "changed_operations": self.changed,
            "hosts": [h.__dict__ for h in self.hosts],
        }


Out = Callable[[str], None]


def rolling_deploy(
    targets: Sequence[Target],
    balancer: Balancer,
    inventory: Path,
    data: Mapping[str, str],
    report: DeployReport,
    out: Out,
    ready_timeout: float = 180.0,
    pyinfra_env: Mapping[str, str] | None = None,
    allow_downtime: bool = False,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Plan every host (at once), then one host at a time: (nothing to do: skip) ->
    drain -> deploy -> restore. A plan that fails stops the deploy before any drain.
    Each host's pyinfra process plans, then waits to execute that plan in its turn.
    `check` runs before each host (the lock still ours); a host drained when the deploy
    fails or is interrupted is put back in the balancer, the later hosts are untouched."""
    outcomes = [HostOutcome(target.name) for target in targets]
    runs = [HostRun(inventory, target.name, data, env=pyinfra_env) for target in targets]
    try:
        try:
            plans = plan_hosts(targets, runs, outcomes)
        except HostsError:
            report.hosts.extend(outcomes)  # which plan failed, and that none was deployed
            raise
        for target, outcome, run, plan in zip(targets, outcomes, runs, plans, strict=True):
            check()
            report.hosts.append(outcome)  # the hosts this deploy reached, in order
            deploy_host(
                target,
                balancer,
                run,
                plan,
                outcome,
                out,
                report.version,
                ready_timeout,
                allow_downtime,
            )
    finally:
        for run in runs:
            run.close()  # the hosts not reached: their plans end, nothing changed


def deploy_host(
    target: Target,
    balancer: Balancer,
    run: HostRun,
    plan: RunResult,
    outcome: HostOutcome,
    out: Out,
    version: str,
    ready_timeout: float,
    allow_downtime: bool = False,
) -> None:
    """(nothing to do: leave it) -> drain -> execute its plan -> restore. From the drain
    on, whatever ends this (a failed deploy, an error, Ctrl-C, SIGTERM) puts the host
    back in the balancer before it propagates."""
    started = time.monotonic() - plan.seconds
    try:
        if plan.changed == 0:
            outcome.result = "no change"
            out(f"{target.name}: no change ({plan.seconds:.1f}s); left in the balancer")
            return
        balanced = not isinstance(balancer, NoBalancer)
        if balanced:
            refuse_last_healthy(target, balancer, allow_downtime, out)
        out(
            f"{target.name}: {plan.changed} operations to change; "
            + (f"draining from {balancer.name}" if balanced else "no balancer to drain from")
        )
        was_healthy = balancer.healthy(target.lb_target)
        back = ready_timeout if was_healthy else 0  # a fresh host is not waited for
        put_back = True  # from here on, until it is back
        try:
            t = time.monotonic()
            balancer.drain(target.lb_target)
            if balanced:
                out(f"{target.name}: drained ({time.monotonic() - t:.1f}s)")
            out(f"{target.name}: deploying {version}")
            try:
                result = run.deploy()
            except HostsError as exc:  # no readable result: a failure all the same
                failed = put_back_failed(target, balancer, outcome, str(exc), back, out)
                put_back = False
                raise failed from None
            outcome.changed = result.changed
            if not result.ok:
                why = "; ".join(result.reasons)
                failed = put_back_failed(target, balancer, outcome, why, back, out, result.log)
                put_back = False
                raise failed
            out(f"{target.name}: {result.changed} changed operations ({result.seconds:.1f}s)")
            t = time.monotonic()
            balancer.restore(target.lb_target, timeout=ready_timeout)
            put_back = False
            if balanced:
                took = time.monotonic() - t
                out(f"{target.name}: healthy in {balancer.name} again ({took:.1f}s)")
            outcome.result = "ok"
        except BaseException as exc:
            if put_back:  # interrupted or an error (AWS, the waiter): back, not waiting
                interrupted = isinstance(exc, KeyboardInterrupt)
                outcome.result = "failed: interrupted" if interrupted else f"failed: {exc}"
                put_back_interrupted(target, balancer, out)
            raise
    finally:
        outcome.seconds = time.monotonic() - started


def refuse_last_healthy(target: Target, balancer: Balancer, allow_downtime: bool, out: Out) -> None:
    """Never drain the only target that serves: with the others unhealthy, draining, or
    unused that is an outage. A target that is not healthy itself (a fresh host) serves
    nothing and may go. Alone in its balancer (a single-host fleet) it may go with
    allow_downtime; with other targets, they are what needs fixing first."""
    health = balancer.health()
    if health.get(target.lb_target) != "healthy":
        return
    others = {t: s for t, s in health.items() if t != target.lb_target}
    if any(state == "healthy" for state in others.values()):
        return
    if not others and allow_downtime:
        out(f"{target.name}: the only target of {balancer.name}: DOWNTIME until it is back")
        return
    listed = ", ".join(f"{t} {s}" for t, s in sorted(others.items()))
    raise HostsError(
        f"{target.name}: not drained: it is the only healthy target of {balancer.name}"
        + (
            f" (others: {listed}); make them healthy first"
            if others
            else "; a single-host fleet is deployed with downtime only with --allow-downtime"
        )
    )


def put_back_interrupted(target: Target, balancer: Balancer, out: Out) -> None:
    """Register a drained host again after an interruption or an error, without waiting
    for its health checks (the balancer's checks decide; the next deploy completes the
    host). Ctrl-C and SIGTERM wait until it is done: a second one must not leave it out."""
    out(f"{target.name}: putting it back in {balancer.name} (signals held until then)")
    with signals_held():
        try:
            balancer.restore(target.lb_target, timeout=0)
        except (JobtoryError, BotoCoreError, ClientError) as exc:
            why = explain(exc) or exc
            out(f"{target.name}: could NOT put it back in {balancer.name}: {why}")
            return
    out(f"{target.name}: registered in {balancer.name} again (its health checks decide)")


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then interrupt (main thread only:
    Python runs handlers there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (systemd, CI, `kill`) unwinds the deploy as Ctrl-C does: every `finally`
    runs (the drained host back, the lock released, the audit written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def plan_hosts(
    targets: Sequence[Target], runs: Sequence[HostRun], outcomes: Sequence[HostOutcome]
) -> list[RunResult]:
    """Every host's plan, run side by side (each its own pyinfra process; a plan only
    reads), so a deploy waits for the slowest plan instead of their sum."""
    with ThreadPoolExecutor(max_workers=max(len(targets), 1)) as pool:
        futures = [
            pool.submit(plan_host, target, run, outcome)
            for target, run, outcome in zip(targets, runs, outcomes, strict=True)
        ]
        return [future.result() for future in futures]  # the first failure, in host order


def plan_host(target: Target, run: HostRun, outcome: HostOutcome) -> RunResult:
    """The host's plan (pyinfra's diff). A plan that failed or cannot be read stops
    the deploy before the host is drained: it is never taken for "no change"."""
    try:
        plan = run.plan()
    except HostsError as exc:
        outcome.result = f"failed: plan: {exc}"
        raise HostsError(f"{target.name}: {outcome.result}") from None
    outcome.planned = plan.changed
    if not plan.ok:
        outcome.result = "failed: plan: " + "; ".join(plan.reasons)
        raise HostsError(f"{target.name}: {outcome.result} (log: {plan.log})")
    return plan


def put_back_failed(
    target: Target,
    balancer: Balancer,
    outcome: HostOutcome,
    why: str,
    timeout: float,
    out: Out,
    log: Path | None = None,
) -> HostsError:
    """A drained host whose deploy failed goes back in the balancer; returns the error
    that stops the deploy. A host that served before serves its previous release again:
    wait `timeout` for it; one that never served (a fresh host) is registered without
    waiting (timeout 0)."""
    outcome.result = f"failed: {why}"
    out(f"{target.name}: deploy FAILED: {why}" + (f" (log: {log})" if log else ""))
    out(f"{target.name}: putting it back in {balancer.name}")
    try:
        balancer.restore(target.lb_target, timeout=timeout)
    except (JobtoryError, BotoCoreError, ClientError) as exc:
        out(f"{target.name}: {explain(exc) or exc}")
    return HostsError(f"{target.name}: {outcome.result}")


class DeployFailed(HostsError):
    """The deploy failed; `report` says how far it got."""

    def __init__(self, message: str, report: DeployReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Fleet:
    """The hosts a deploy reaches, and how pyinfra finds them."""

    targets: list[Target]
    group: dict[str, Any]
    inventory: Path
    pyinfra_env: dict[str, str]


def fleet_of(
    env: Environment, spec: Path, only: Sequence[str] = (), out: Out = lambda line: None
) -> Fleet:
    """A static inventory when the spec names one (the fleet replica), else EC2 (its ASG
    members not InService yet are skipped, each named)."""
    if env.hosts.inventory:
        path = (spec.resolve().parent / env.hosts.inventory).resolve()
        targets, group = static_inventory(path)
        fleet = Fleet(targets, group, path, {})
    else:
        skipped: list[tuple[str, str]] = []
        hosts = ec2_inventory(env, skipped)
        for instance_id, state in skipped:
            why = "its user data deploys it" if state.startswith("Pending") else "not in service"
            out(f"{instance_id}: skipped: {state} in the Auto Scaling group ({why})")
        targets = [Target(n, str(d["lb_target"]), str(d["ssh_hostname"])) for n, d in hosts]
        env_vars = {"JOBTORY_ENV": env.name, "JOBTORY_SPEC": str(spec.resolve())}
        fleet = Fleet(targets, {}, PYINFRA_DIR / "inventory" / "ec2.py", env_vars)
    if only:
        fleet = replace(fleet, targets=[t for t in fleet.targets if t.name in only])
    if not fleet.targets:
        raise HostsError(f"no hosts in {env.name} (inventory: {fleet.inventory.name})")
    return fleet


def deploy(
    env: Environment, options: DeployOptions, out: Out, allow_downtime: bool = False
) -> DeployReport:
    """`deploy.py hosts`: build, lock, roll, audit. Raises DeployFailed with the report.
    With `options.launch_template` (hosts.launch.prepare_release published the release),
    the launch template is moved to it once the lock is held, before any host.
    SIGTERM interrupts it as Ctrl-C does; either way the drained host goes back in the
    balancer and the lock is released. `allow_downtime`: a single-host fleet's only
    target may be drained."""
    with sigterm_interrupts():
        return _deploy(env, options, out, allow_downtime)


def _deploy(
    env: Environment, options: DeployOptions, out: Out, allow_downtime: bool
) -> DeployReport:
    mode = options.caddy_mode or env.caddy.mode
    db_ca_bundle(env, options.spec)  # before the lock: a missing CA bundle changes nothing
    source = options.source.resolve() if options.source else REPO
    version = check_version(options.version) if options.version else default_version(source)
    report = DeployReport(env.name, version)
    lock_name, audit_name = parameter_names(env.stack_name, env.name)
    ssm = client_for(env, "ssm")
    lock = DeployLock(ssm, lock_name, version, stale_after=options.lock_timeout)
    with aws_errors():
        stale = lock.acquire()
    started_wall = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    try:
        lock.start_heartbeat()  # a deploy longer than the timeout keeps its lock
        out(f"lock: {lock_name} taken by {lock.info.owner} (heartbeat every {lock.every:.0f}s)")
        if stale is not None:
            age = f"no heartbeat for {options.lock_timeout:.0f}s"
            out(f"lock: replaced a stale lock of {stale.owner} ({age})")
        if options.launch_template:  # under the lock: two deploys never move it at once
            moved = move_launch_template(env, version, out=out)
            if moved is not None:
                out(f"launch template: v{moved} boots {version}")
        with aws_errors():
            fleet = fleet_of(env, options.spec, options.only, out)
        t = time.monotonic()
        manifest = build_release(version, source)
        out(
            f"release {version}: {manifest.source} + {manifest.wheels} "
            f"({time.monotonic() - t:.1f}s)"
        )
        with aws_errors():
            env_sha256 = env_file_sha256(ssm, env.ssm_prefix)
        data = {
            "jobtory_env_sha256": env_sha256,
            "jobtory_env": env.name,
            "jobtory_version": version,
            "jobtory_artifacts": str(ARTIFACTS_DIR),
            "jobtory_spec": str(options.spec.resolve()),
            "jobtory_keep_releases": str(options.keep),
            "jobtory_caddy_mode": mode,
        }
        names = ", ".join(t.name for t in fleet.targets)
        out(f"hosts: {names} (one at a time); caddy {mode} mode")
        balancer: Balancer = NoBalancer()
        with aws_errors():
            if mode == "alb":
                balancer = balancer_for(env, fleet.group, say=out)
            rolling_deploy(
                fleet.targets,
                balancer,
                fleet.inventory,
                data,
                report,
                out,
                ready_timeout=options.ready_timeout,
                pyinfra_env=fleet.pyinfra_env,
                allow_downtime=allow_downtime,
                check=lock.check,
            )
        report.result = "ok" if report.changed else "no change"
    except JobtoryError as exc:
        report.result = f"failed: {exc}"
        raise DeployFailed(str(exc), report) from None
    except KeyboardInterrupt:
        report.result = "failed: interrupted"
        out("interrupted: the hosts not reached yet are untouched")
        raise
    finally:
        report.seconds = time.monotonic() - started
        with signals_held():  # a second Ctrl-C must not leave the lock behind
            audit(ssm, audit_name, lock, report, started_wall, out)
            release(lock, out)
        out(
            f"result: {report.result}; {report.changed} changed operations on "
            f"{len(report.hosts)} hosts in {report.seconds:.1f}s"
        )
    return report


def release(lock: DeployLock, out: Out) -> None:
    """Release the lock; a failure is reported (with the way out), not raised over the
    deploy's own outcome."""
    try:
        with aws_errors():
            lock.release()
    except JobtoryError as exc:
        out(f"lock: could NOT release {lock.name}: {exc}; `deploy.py hosts --unlock`")
        return
    if lock.lost:
        out(f"lock: {lock.lost}")
    else:
        out(f"lock: {lock.name} released")


def env_file_sha256(ssm: Any, prefix: str) -> str:
    """The hash of the env file SSM's values make now, rendered as the hosts render it:
    each host's plan compares its file with it (no SSM call on the hosts). The values
    stay in this process; only the hash goes to the hosts."""
    return hashlib.sha256(render_env_file(load_env(prefix, client=ssm)).encode()).hexdigest()


def audit(
    ssm: Any, name: str, lock: DeployLock, report: DeployReport, started: str, out: Out
) -> None:
    """Append the deploy's audit line; a failure to record it is reported, not raised."""
    record = AuditRecord(
        who=lock.info.owner if lock.held else whoami(),
        env=report.env,
        version=report.version,
        started=started,
        seconds=round(report.seconds, 2),
        result=report.result,
        hosts=[h.name for h in report.hosts],
        changed_operations=report.changed,
    )
    try:
        with aws_errors():
            append_audit(ssm, name, record)
    except JobtoryError as exc:
        out(f"audit: could not record this deploy: {exc}")
