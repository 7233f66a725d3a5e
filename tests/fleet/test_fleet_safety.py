"""Rolling-deploy safety on the fleet replica: Ctrl-C in the middle of a deploy leaves
every host back in service and the lock released; a deploy running past the lock's
timeout keeps its lock (its heartbeat, not its age, says it is alive).

Runs after test_fleet.py (file order; the hosts serve `fleet.new`) and leaves them so.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.fleet.conftest import (
    AWS_URL,
    ROOT,
    Deploy,
    Fleet,
    alb_versions,
    run_deploy,
    ssm,
    wait_targets,
)
from tests.helpers import ON_THE_REPLICA_WORKER

pytestmark = [pytest.mark.fleet, ON_THE_REPLICA_WORKER, pytest.mark.timeout(900)]

LOCK_TIMEOUT = "3"  # seconds: far below a deploy's duration, the heartbeat (1 s) keeps it


class Running:
    """`deploy.py hosts` started in its own process group, as a terminal runs it: a
    Ctrl-C there reaches the deployer and its pyinfra processes alike. Its output lines
    are read as they come (unbuffered), so the test waits for events, not for time."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "deploy.py", "hosts", "--env", "local", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "AWS_ENDPOINT_URL": AWS_URL, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_sigint_mid_deploy_leaves_every_host_in_service(fleet: Fleet, first_deploy: Deploy) -> None:
    from jobtory_stack.hosts.lock import parameter_names, read_audit

    lock_name, audit_name = parameter_names("jobtory", "local")
    wait_targets("healthy", timeout=120)
    version = f"{fleet.new}-sigint"  # a new release: the first host is drained and deployed
    deploy = Running("--version", version, "--lock-timeout", LOCK_TIMEOUT)
    try:
        line = deploy.wait_for(": deploying " + version, timeout=600)
        host = line.split(":", 1)[0]

        # The lock is older than its timeout by now (release built, every host planned),
        # yet the heartbeat keeps it: a second deploy refuses instead of taking it over.
        holder = json.loads(ssm().get_parameter(Name=lock_name)["Parameter"]["Value"])
        assert time.time() - holder["since"] > float(LOCK_TIMEOUT), holder
        second = run_deploy("--version", version, "--lock-timeout", LOCK_TIMEOUT)
        assert second.code == 1, second.output
        assert "another deploy holds the lock" in second.output, second.output

        os.killpg(deploy.proc.pid, signal.SIGINT)  # Ctrl-C in the operator's terminal
        code, output = deploy.finish(timeout=300)
    finally:
        deploy.kill()
    assert code == 130, output
    assert f"{host}: putting it back in" in output, output
    assert f"{host}: registered in" in output, output
    assert f"lock: {lock_name} released" in output, output
    others = {"ec2-1", "ec2-2"} - {host}
    assert not any(f"{other}: deploying" in output for other in others), output

    wait_targets("healthy", timeout=120)  # every target back in service
    client = ssm()
    with pytest.raises(client.exceptions.ParameterNotFound):
        client.get_parameter(Name=lock_name)
    last = read_audit(client, audit_name)[-1]
    assert last["version"] == version and last["result"] == "failed: interrupted", last

    # The next deploy finds the fleet as usual and completes it (back to fleet.new).
    again = run_deploy("--version", fleet.new)
    assert again.code == 0, again.output
    wait_targets("healthy", timeout=120)
    assert alb_versions(20) == {fleet.new: 20}
