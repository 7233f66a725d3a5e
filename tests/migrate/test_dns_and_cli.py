"""`deploy.py migrate --check` and the CLI (the delegation check itself: test_delegation.py)."""

from __future__ import annotations

import socket

import pytest

from jobtory_stack.cli import main
from tests.helpers import ROOT
from tests.migrate.conftest import DnsResponder

pytestmark = pytest.mark.aws


def test_cli_check_on_an_empty_account(
    aws_env: str, dns_responder: DnsResponder, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["migrate", "--spec", str(ROOT / "stack.toml"), "--env", "local", "--check"]
    argv += ["--resolver", dns_responder.address, "--caddy-admin", "127.0.0.1:9"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["1", "domain", "done"]
    assert lines[1].split()[:4] == ["2", "hosted", "zone", "todo"]
    assert "127.0.0.1:9: unreachable" in lines[4]
    assert lines[7].split()[:4] == ["8", "google", "oauth", "manual"]
    assert lines[8] == "next: step 2"


def test_cli_refuses_a_bad_step_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["migrate", "--spec", str(ROOT / "stack.toml"), "--from-step", "9"])
    assert exc.value.code == 2


def test_check_reports_a_silent_resolver_instead_of_failing(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobtory_stack.aws.core import Ctx
    from jobtory_stack.migrate.flow import STEPS, new_migration, run_zone
    from jobtory_stack.spec.loader import load_stack

    env = load_stack(ROOT / "stack.toml").env("local")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        m = new_migration(
            env,
            None,
            lambda line: None,
            resolver=("127.0.0.1", silent.getsockname()[1]),
            verify_delegation=True,
            dns_timeout=0.2,
        )
        assert isinstance(m.ctx, Ctx)
        m.verify_delegation = False
        run_zone(m)  # the zone exists; only the delegation is unknown
        m.verify_delegation = True
        state = STEPS[1].check(m)
    assert not state.done and "delegation unknown" in state.detail
    assert "no answer within" in state.detail


def test_cli_runs_steps_1_to_4_then_stops_at_5_without_an_admin_address(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI path: steps 1-4 run against moto, step 5 refuses without --caddy-admin
    (exit 1, one line naming the fix), and --check then says 1-4 done, next 5."""
    spec = ["--spec", str(ROOT / "stack.toml"), "--env", "local"]
    assert main(["migrate", *spec, "--skip-hosts", "--wait-timeout", "60"]) == 1
    captured = capsys.readouterr()
    assert "step 4/8: load balancer" in captured.out
    assert captured.err.startswith("error: step 5 needs the Caddy admin API of every host")
    assert main(["migrate", *spec, "--check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = {int(line.split()[0]): line for line in lines[:8]}
    assert all("  done  " in labels[i] for i in (1, 2, 3, 4)), lines
    assert "  todo  " in labels[5] and "no Caddy admin address given" in labels[5]
    assert lines[8] == "next: step 5"
