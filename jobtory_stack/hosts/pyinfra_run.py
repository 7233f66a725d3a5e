"""One pyinfra run (the plan or the deploy) of one host, through pyinfra's Python API.

The child process of hosts.runner: it loads the inventory and the deploy file the way
the `pyinfra` CLI does, runs the operations, and writes what the host's operations did,
read from pyinfra's own state (each operation's meta), as one JSON object:

    {"host": "ec2-1", "dry": false, "ok": true, "changed": [operation names], "reasons": []}

Its own process because pyinfra keeps global state and runs on gevent (which must
patch the standard library before anything else is imported); the runner enforces the
timeout by killing it. pyinfra's log goes to stdout/stderr: the runner keeps it in the
host's log file.

    python -m jobtory_stack.hosts.pyinfra_run INVENTORY DEPLOY HOST --result PATH
        [--dry | --plan-result PATH] [--data KEY=VALUE]...

With --plan-result it plans, writes the plan there, and waits: "go" on stdin executes
that prepared state (one process, one connection, one prepare per host and deploy),
anything else ends it with nothing changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.operation import OperationMeta
    from pyinfra.api.state import State

# The host side's failure messages (pyinfra/files/activate.sh, the tasks) start with
# "jobtory:"; the deployer quotes them as the reason.
REASON_RE = re.compile(r"jobtory: .*(failed|not built|timed out).*")


@dataclass
class Outcome:
    """What one run did to one host: the JSON result the runner reads."""

    host: str
    dry: bool
    ok: bool = False
    changed: list[str] = field(default_factory=list)  # names of the changed operations
    reasons: list[str] = field(default_factory=list)  # why it failed (ok is False)
    # where the time went, for people and benchmarks: the phases, then each operation
    phases: dict[str, float] = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def write(self, path: Path) -> None:
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(asdict(self), indent=2) + "\n")
        part.replace(path)  # all or nothing: a killed run leaves no half result


def op_name(state: State, op_hash: str) -> str:
    return sorted(state.op_meta[op_hash].names)[0]


def did_change(meta: OperationMeta, executed: bool) -> bool:
    """Executed: whether it changed the host. The plan: whether it will (evaluated)."""
    if executed:
        return meta.is_complete() and meta.did_change()
    return meta.will_change


def changed_operations(state: State, host: Host, executed: bool) -> list[str]:
    """The host's operations that changed it (executed) or will change it (the plan)."""
    from pyinfra.context import ctx_host, ctx_state

    names = []
    with ctx_state.use(state), ctx_host.use(host):
        for op_hash in state.get_op_order():
            op = state.ops[host].get(op_hash)
            if op is None:
                continue
            if did_change(op.operation_meta, executed):
                names.append(op_name(state, op_hash))
    return names


def failure_reasons(state: State, host: Host) -> list[str]:
    """The `jobtory: ... failed` lines of the operations that failed, else which failed.
    An operation run with `_ignore_errors` did not fail the host: no reason."""
    reasons: list[str] = []
    for op_hash in state.get_op_order():
        op = state.ops[host].get(op_hash)
        if op is None or op.global_arguments.get("_ignore_errors"):
            continue
        meta = op.operation_meta
        if not meta.is_complete() or meta.did_succeed():
            continue
        lines = [*meta.stderr_lines, *meta.stdout_lines]
        quoted = [m.group(0).strip() for line in lines if (m := REASON_RE.search(line))]
        last = (meta.stderr_lines or meta.stdout_lines or ["no output"])[-1].strip()
        reasons += quoted or [f"operation {op_name(state, op_hash)!r} failed: {last}"]
    return list(dict.fromkeys(reasons))


def error_reason(exc: BaseException) -> str:
    """One line for an exception: pyinfra wraps errors of the deploy code with its file."""
    inner = getattr(exc, "exception", None)
    if isinstance(inner, BaseException):
        where = getattr(exc, "filename", "")
        return f"{where}: {type(inner).__name__}: {inner}" if where else error_reason(inner)
    return f"{type(exc).__name__}: {exc}"


def parse_data(pairs: Sequence[str]) -> dict[str, str]:
    """--data KEY=VALUE pairs; values stay strings (HostSettings parses them)."""
    data = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--data {pair!r}: expected KEY=VALUE")
        data[key] = value
    return data


def pyinfra_state(inventory: str, name: str, data: dict[str, str], plan: bool) -> State:
    """pyinfra's state for host `name` of the inventory file, set up as its CLI does."""
    import click
    from pyinfra.api.config import Config
    from pyinfra.api.output import set_echo, set_formatter
    from pyinfra.api.state import State
    from pyinfra.context import ctx_config, ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory
    from pyinfra_cli.log import setup_logging

    import pyinfra

    pyinfra.is_cli = True  # the deploy file uses local.include, a CLI-mode feature
    set_formatter(click.style)
    set_echo(click.echo)
    setup_logging(logging.INFO)  # as the CLI logs by default
    # Plan: evaluate every operation against the host's facts now. Deploy: as `pyinfra
    # -y`, evaluate each one just before it runs (it sees what earlier ones changed).
    state = State(check_for_changes=plan)
    state.cwd = os.getcwd()  # operation names are relative to it, as in the CLI
    ctx_state.set(state)
    config = Config()
    ctx_config.set(config)
    inv = make_inventory(inventory, cwd=state.cwd, override_data=data)
    ctx_inventory.set(inv)
    state.init(inv, config, initial_limit=[inv.get_host(name)])
    return state


class PyinfraRun:
    """One host's pyinfra state through a run: connect and prepare (with `plan`, every
    operation diffed against the facts), then execute. Fills the Outcome it is given."""

    def __init__(self, inventory: str, name: str, data: dict[str, str], plan: bool) -> None:
        from pyinfra.api.state import BaseStateCallback

        self.state = pyinfra_state(inventory, name, data, plan)
        self.host = self.state.inventory.get_host(name)
        self.outcome = Outcome(name, dry=True)
        started: dict[str, float] = {}
        run = self

        class Callbacks(BaseStateCallback):
            @staticmethod
            def host_connect_error(state: State, host: Host, error: Any) -> None:
                run.outcome.reasons.append(f"could not connect to {host.name}: {error}")

            @staticmethod
            def operation_host_start(state: State, host: Host, op_hash: str) -> None:
                started[op_hash] = time.monotonic()

            @staticmethod
            def operation_end(state: State, op_hash: str) -> None:
                if op_hash in started:
                    took = round(time.monotonic() - started.pop(op_hash), 3)
                    run.outcome.timings.append((op_name(state, op_hash), took))

        self.state.add_callback_handler(Callbacks())

    def _phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.outcome.phases[name] = round(now - since, 3)
        return now

    def prepare(self, deploy: Path, outcome: Outcome) -> None:
        """Connect and load the deploy file: with `plan`, that is the plan."""
        from pyinfra.api.connect import connect_all
        from pyinfra.api.state import StateStage
        from pyinfra_cli.util import load_deploy_file

        self.outcome = outcome
        t = time.monotonic()
        self.state.set_stage(StateStage.Connect)
        connect_all(self.state)
        t = self._phase("connect", t)
        self.state.set_stage(StateStage.Prepare)
        self.state.config.lock_current_state()
        load_deploy_file(self.state, str(deploy))
        self.state.config.reset_locked_state()
        self._phase("prepare", t)

    def execute(self, outcome: Outcome) -> None:
        """Run the operations, each evaluated again just before it runs."""
        from pyinfra.api.operations import run_ops
        from pyinfra.api.state import StateStage

        from pyinfra import logger

        self.outcome = outcome
        logger.info("--> Beginning operation run...")
        t = time.monotonic()
        self.state.set_stage(StateStage.Execute)
        run_ops(self.state)
        self._phase("execute", t)

    def report(self) -> None:
        """Fill the outcome from pyinfra's state; the CLI's tables go to the log."""
        from pyinfra_cli.prints import print_meta, print_results

        from pyinfra import logger

        outcome = self.outcome
        if outcome.dry:
            logger.info("--> Detected changes:")
            print_meta(self.state)
        else:
            logger.info("--> Results:")
            print_results(self.state)
            outcome.reasons += failure_reasons(self.state, self.host)
            for op, took in outcome.timings:
                logger.info(f"    {took:7.2f}s  {op}")
        logger.info("--> Phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in outcome.phases.items()))
        outcome.changed = changed_operations(self.state, self.host, executed=not outcome.dry)
        outcome.ok = self.host in self.state.active_hosts and not outcome.reasons

    def close(self) -> None:
        from pyinfra.api.connect import disconnect_all

        if self.state.activated_hosts:
            disconnect_all(self.state)


def guarded(step: Callable[[], None]) -> str | None:
    """Run `step`; a failure is a result too: its one-line reason (the error goes to the log)."""
    from pyinfra.api.exceptions import PyinfraError

    try:
        step()
    except Exception as exc:
        if isinstance(exc, PyinfraError):
            print(f"--> pyinfra: {exc}", file=sys.stderr)
        else:
            traceback.print_exc()
        return error_reason(exc)
    return None


def finish(run: PyinfraRun | None, outcome: Outcome, error: str | None, path: Path) -> None:
    """Fill `outcome` from the run and write it. The operations' own reasons come first:
    pyinfra's "No hosts remaining!" after a failed operation adds nothing to them."""
    if run is not None:
        error = guarded(run.report) or error
    if error is not None:
        outcome.ok = False
        outcome.reasons = outcome.reasons or [error]
    outcome.write(path)
    print(f"--> jobtory result: {json.dumps(asdict(outcome))}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    # gevent first, before the standard library's sockets are in use (as pyinfra's CLI).
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(prog="python -m jobtory_stack.hosts.pyinfra_run")
    parser.add_argument("inventory", help="a pyinfra inventory file")
    parser.add_argument("deploy", type=Path, help="the deploy file")
    parser.add_argument("host", help="the one inventory host to run against")
    parser.add_argument("--result", type=Path, required=True, help="write the JSON result here")
    parser.add_argument("--dry", action="store_true", help="only plan: change nothing")
    parser.add_argument(
        "--plan-result",
        type=Path,
        help="plan first and write the plan here, then execute only after 'go' on stdin",
    )
    parser.add_argument(
        "--planned-fd",
        type=int,
        help="with --plan-result: a pipe told once the plan is written (the runner waits on it)",
    )
    parser.add_argument("--data", action="append", default=[], help="host data KEY=VALUE")
    args = parser.parse_args(argv)
    data = parse_data(args.data)
    plan_first = args.dry or args.plan_result is not None
    outcome = Outcome(args.host, dry=plan_first)
    run: PyinfraRun | None = None

    def start() -> None:
        nonlocal run
        run = PyinfraRun(args.inventory, args.host, data, plan=plan_first)
        run.prepare(args.deploy, outcome)

    try:
        error = guarded(start)
        prepared = run if error is None and not outcome.reasons else None
        if prepared is not None and not plan_first:  # one pass, as `pyinfra -y`
            error = guarded(lambda: prepared.execute(outcome))
        finish(run, outcome, error, args.plan_result or args.result)
        if args.planned_fd is not None:  # the runner's wait ends: the plan is there
            # a write, not a close: gevent defers closing a pipe to its hub, which does
            # not run while this process blocks on stdin below
            os.write(args.planned_fd, b"planned\n")
        if args.plan_result is None or prepared is None or not outcome.ok:
            return 0 if outcome.ok else 1
        # The plan, then (as the pyinfra CLI after its prompt) the same state executes it.
        if sys.stdin.readline().strip() != "go":
            return 0  # not asked to go: nothing changed
        executed = Outcome(args.host, dry=False)
        error = guarded(lambda: prepared.execute(executed))
        finish(run, executed, error, args.result)
        return 0 if executed.ok else 1
    finally:
        if run is not None:
            run.close()


if __name__ == "__main__":
    sys.exit(main())
