"""Step 2's delegation check (jobtory_stack.aws.delegation, on dnspython) against the
local authoritative responder on 127.0.0.1: referrals, the answer section, TCP after a
truncated or missing UDP answer, NXDOMAIN, and bounded one-line errors."""

from __future__ import annotations

import socket
import time

import dns.resolver
import pytest

from jobtory_stack.aws.delegation import delegated_ns, normalize_ns, parse_resolver
from jobtory_stack.errors import DnsError, MigrateError
from tests.migrate.conftest import DnsQuery, DnsResponder

ROUTE53_NS = ["ns-1.awsdns-01.org", "NS-2.awsdns-02.co.uk."]
WANT = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk"]


def server(responder: DnsResponder) -> tuple[str, int]:
    return parse_resolver(responder.address)


def test_parse_resolver_forms() -> None:
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("1.1.1.1") == ("1.1.1.1", 53)
    assert parse_resolver("[::1]:5300") == ("::1", 5300)
    assert normalize_ns(["B.example.", "a.example", "b.example"]) == ["a.example", "b.example"]


def test_a_referral_from_the_parent_zones_server(dns_responder: DnsResponder) -> None:
    """The parent's answer: no answer section, the NS in the authority section."""
    dns_responder.delegations["jobtory.com"] = ROUTE53_NS
    assert delegated_ns("jobtory.com", server(dns_responder), timeout=1) == WANT
    assert dns_responder.queries == [DnsQuery("udp", "jobtory.com", "NS", True)]


def test_an_authoritative_answer_from_the_named_server(dns_responder: DnsResponder) -> None:
    dns_responder.records["jobtory.com"] = ROUTE53_NS
    assert delegated_ns("jobtory.com", server(dns_responder), timeout=1) == WANT


def test_nxdomain_means_not_delegated(dns_responder: DnsResponder) -> None:
    assert delegated_ns("nobody.example", server(dns_responder), timeout=1) == []
    dns_responder.others[("jobtory.com", "SOA")] = ["ns.x. admin.x. 1 3600 600 86400 300"]
    assert delegated_ns("jobtory.com", server(dns_responder), timeout=1) == []  # no NS: NODATA


def test_without_resolver_it_finds_the_parent_zone_and_asks_it_without_recursion(
    dns_responder: DnsResponder,
) -> None:
    """The whole default path on 127.0.0.1: the resolver finds the parent zone (`test.`),
    its server and that server's address; the question goes to it with RD clear."""
    dns_responder.others[("test", "SOA")] = ["ns1.test. admin.test. 1 3600 600 86400 300"]
    dns_responder.records["test"] = ["ns1.test"]
    dns_responder.others[("ns1.test", "A")] = ["127.0.0.1"]
    dns_responder.delegations["jobtory.test"] = ROUTE53_NS
    lookup = dns.resolver.Resolver(configure=False)
    lookup.nameservers, lookup.port, lookup.lifetime = ["127.0.0.1"], dns_responder.port, 2
    found = delegated_ns("jobtory.test", timeout=1, lookup=lookup, port=dns_responder.port)
    assert found == WANT
    assert dns_responder.queries[-1] == DnsQuery("udp", "jobtory.test", "NS", False)
    assert ("test", "NS") in {(q.name, q.rdtype) for q in dns_responder.queries}


def test_a_truncated_udp_answer_is_asked_again_over_tcp(dns_responder: DnsResponder) -> None:
    dns_responder.delegations["jobtory.com"] = ROUTE53_NS
    dns_responder.truncate_udp = True
    assert delegated_ns("jobtory.com", server(dns_responder), timeout=1) == WANT
    assert [q.transport for q in dns_responder.queries] == ["udp", "tcp"]


def test_no_udp_answer_is_asked_again_over_tcp(dns_responder: DnsResponder) -> None:
    dns_responder.records["jobtory.com"] = ROUTE53_NS
    dns_responder.silent_udp = True
    assert delegated_ns("jobtory.com", server(dns_responder), timeout=0.3) == WANT
    assert [q.transport for q in dns_responder.queries] == ["udp", "tcp"]


def test_no_answer_at_all_is_one_bounded_line_naming_the_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # and no TCP listener
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DnsError) as err:
            delegated_ns("jobtory.com", ("127.0.0.1", port), timeout=0.2)
    assert time.monotonic() - started < 2
    message = str(err.value)
    assert isinstance(err.value, MigrateError) and "\n" not in message
    assert f"DNS server 127.0.0.1:{port}" in message
    assert "no answer within 0.2 s over UDP" in message and "TCP failed" in message
    assert "--resolver HOST:PORT" in message  # the fix


def test_a_refusing_server_is_an_error_not_a_missing_delegation(
    dns_responder: DnsResponder,
) -> None:
    """Only NXDOMAIN (or no NS at all) means "not delegated"; REFUSED says nothing."""
    dns_responder.records["jobtory.com"] = ROUTE53_NS
    dns_responder.refuse = True
    with pytest.raises(DnsError, match=r"127\.0\.0\.1:\d+ answered REFUSED to NS jobtory\.com"):
        delegated_ns("jobtory.com", server(dns_responder), timeout=1)


def test_a_resolver_that_finds_no_parent_zone_is_named_in_the_error(
    dns_responder: DnsResponder,
) -> None:
    """The responder knows no zone at all (NXDOMAIN up to the root), like a resolver that
    cannot reach the internet."""
    lookup = dns.resolver.Resolver(configure=False)
    lookup.nameservers, lookup.port, lookup.lifetime = ["127.0.0.1"], dns_responder.port, 2
    with pytest.raises(DnsError) as err:
        delegated_ns("jobtory.test", timeout=1, lookup=lookup, port=dns_responder.port)
    assert str(err.value) == (
        "the resolver 127.0.0.1 cannot find the servers of the zone above jobtory.test "
        "(no zone up to the root); check /etc/resolv.conf, or pass --resolver HOST:PORT"
    )
