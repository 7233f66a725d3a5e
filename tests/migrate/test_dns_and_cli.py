"""The stdlib NS query (against the local responder) and `deploy.py migrate --check`."""

from __future__ import annotations

import socket
import struct

import pytest

from jobtory_stack.cli import main
from jobtory_stack.migrate.flow import (
    DnsError,
    build_query,
    encode_name,
    parse_ns_response,
    parse_resolver,
    query_ns,
)
from tests.helpers import ROOT
from tests.migrate.conftest import DnsResponder

pytestmark = pytest.mark.aws


def test_parse_resolver_forms() -> None:
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("1.1.1.1") == ("1.1.1.1", 53)
    assert parse_resolver("[::1]:5300") == ("::1", 5300)


def test_query_ns_against_the_local_responder(dns_responder: DnsResponder) -> None:
    dns_responder.records["jobtory.com"] = ["ns-1.awsdns-01.org", "NS-2.awsdns-02.co.uk."]
    server = parse_resolver(dns_responder.address)
    assert query_ns("jobtory.com", server, timeout=1) == [
        "ns-1.awsdns-01.org",
        "ns-2.awsdns-02.co.uk",
    ]
    assert query_ns("nobody.example", server, timeout=1) == []  # NXDOMAIN
    assert dns_responder.queries == ["jobtory.com", "nobody.example"]


def test_ns_in_the_authority_section_with_compressed_names() -> None:
    """A referral: no answers, the NS in the authority section, names compressed."""
    qid, query = build_query("jobtory.com", qid=7)
    question = query[12:]
    header = struct.pack(">HHHHHH", 7, 0x8100, 1, 0, 2, 0)
    # rdata 1: "ns1" + pointer to "jobtory.com" in the question (offset 12)
    r1 = b"\x03ns1\xc0\x0c"
    r2 = encode_name("ns.other.net")
    auth = struct.pack(">HHHIH", 0xC00C, 2, 1, 60, len(r1)) + r1
    auth += struct.pack(">HHHIH", 0xC00C, 2, 1, 60, len(r2)) + r2
    assert parse_ns_response(header + question + auth, qid) == [
        "ns.other.net",
        "ns1.jobtory.com",
    ]
    with pytest.raises(DnsError, match="another query"):
        parse_ns_response(header + question + auth, qid + 1)
    servfail = struct.pack(">HHHHHH", 7, 0x8182, 1, 0, 0, 0) + question
    with pytest.raises(DnsError, match="rcode 2"):
        parse_ns_response(servfail, qid)


def test_a_silent_resolver_is_a_bounded_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        server = ("127.0.0.1", silent.getsockname()[1])
        with pytest.raises(DnsError, match=r"no answer within 0\.2 s"):
            query_ns("jobtory.com", server, timeout=0.2, tries=2)


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
