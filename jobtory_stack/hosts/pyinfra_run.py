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
        [--dry] [--data KEY=VALUE]...
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
from collections.abc import Sequence
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


def pyinfra_state(inventory: str, name: str, data: dict[str, str], dry: bool) -> State:
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
    state = State(check_for_changes=dry)
    state.cwd = os.getcwd()  # operation names are relative to it, as in the CLI
    ctx_state.set(state)
    config = Config()
    ctx_config.set(config)
    inv = make_inventory(inventory, cwd=state.cwd, override_data=data)
    ctx_inventory.set(inv)
    state.init(inv, config, initial_limit=[inv.get_host(name)])
    return state


def run(inventory: str, deploy: Path, name: str, data: dict[str, str], outcome: Outcome) -> None:
    """Connect, load the deploy file, run it (or only plan it); fill `outcome`."""
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import BaseStateCallback, StateStage
    from pyinfra_cli.prints import print_meta, print_results
    from pyinfra_cli.util import load_deploy_file

    from pyinfra import logger

    started: dict[str, float] = {}

    class Callbacks(BaseStateCallback):
        @staticmethod
        def host_connect_error(state: State, host: Host, error: Any) -> None:
            outcome.reasons.append(f"could not connect to {host.name}: {error}")

        @staticmethod
        def operation_host_start(state: State, host: Host, op_hash: str) -> None:
            started[op_hash] = time.monotonic()

        @staticmethod
        def operation_end(state: State, op_hash: str) -> None:
            if op_hash in started:
                took = round(time.monotonic() - started.pop(op_hash), 3)
                outcome.timings.append((op_name(state, op_hash), took))

    def phase(name: str, since: float) -> float:
        now = time.monotonic()
        outcome.phases[name] = round(now - since, 3)
        return now

    state = pyinfra_state(inventory, name, data, outcome.dry)
    host = state.inventory.get_host(name)
    state.add_callback_handler(Callbacks())
    t = time.monotonic()
    try:
        state.set_stage(StateStage.Connect)
        connect_all(state)
        t = phase("connect", t)
        state.set_stage(StateStage.Prepare)
        state.config.lock_current_state()
        load_deploy_file(state, str(deploy))
        state.config.reset_locked_state()
        t = phase("prepare", t)  # the plan: every operation diffed against the facts
        if not outcome.dry:
            logger.info("--> Beginning operation run...")
            state.set_stage(StateStage.Execute)
            run_ops(state)
            t = phase("execute", t)
    finally:
        # The CLI's tables, for the log; the result is read from the same state.
        if outcome.dry:
            logger.info("--> Detected changes:")
            print_meta(state)
        else:
            logger.info("--> Results:")
            print_results(state)
            outcome.reasons += failure_reasons(state, host)
            for op, took in outcome.timings:
                logger.info(f"    {took:7.2f}s  {op}")
        logger.info("--> Phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in outcome.phases.items()))
        outcome.changed = changed_operations(state, host, executed=not outcome.dry)
        outcome.ok = host in state.active_hosts and not outcome.reasons
        if state.activated_hosts:
            disconnect_all(state)


def main(argv: Sequence[str] | None = None) -> int:
    # gevent first, before the standard library's sockets are in use (as pyinfra's CLI).
    from gevent import monkey

    monkey.patch_all()
    from pyinfra.api.exceptions import PyinfraError

    parser = argparse.ArgumentParser(prog="python -m jobtory_stack.hosts.pyinfra_run")
    parser.add_argument("inventory", help="a pyinfra inventory file")
    parser.add_argument("deploy", type=Path, help="the deploy file")
    parser.add_argument("host", help="the one inventory host to run against")
    parser.add_argument("--result", type=Path, required=True, help="write the JSON result here")
    parser.add_argument("--dry", action="store_true", help="only plan: change nothing")
    parser.add_argument("--data", action="append", default=[], help="host data KEY=VALUE")
    args = parser.parse_args(argv)
    outcome = Outcome(args.host, args.dry)
    try:
        run(args.inventory, args.deploy, args.host, parse_data(args.data), outcome)
    except Exception as exc:  # a failed run is a result too, the error goes to the log
        if isinstance(exc, PyinfraError):
            print(f"--> pyinfra: {exc}", file=sys.stderr)
        else:
            traceback.print_exc()
        outcome.ok = False
        # pyinfra's own "No hosts remaining!" adds nothing to a failed operation's reason
        outcome.reasons = outcome.reasons or [error_reason(exc)]
    outcome.write(args.result)
    print(f"--> jobtory result: {json.dumps(asdict(outcome))}", flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
