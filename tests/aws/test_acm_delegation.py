"""Before waiting for ACM, apply checks that the parent zone delegates the apex to the
Route 53 zone (the lookup is injected: the emulator's zones are not on public DNS)."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from jobtory_stack.aws import reconcile
from jobtory_stack.aws.core import new_ctx
from jobtory_stack.errors import AwsError, DnsError
from jobtory_stack.spec.loader import load_stack
from tests.helpers import ROOT

pytestmark = pytest.mark.aws

ENV = "staging"
APEX = "staging.jobtory.com"


def zone_ns() -> list[str]:
    route53 = boto3.client("route53")
    [zone] = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == f"{APEX}."]
    return sorted(route53.get_hosted_zone(Id=zone["Id"])["DelegationSet"]["NameServers"])


def apply(lookup: Callable[[str], list[str]]) -> tuple[list[str], AwsError | None]:
    lines: list[str] = []
    ctx = new_ctx(load_stack(ROOT / "stack.toml").env(ENV), out=lines.append)
    ctx.delegation = lookup
    try:
        reconcile.apply(ctx)
    except AwsError as error:
        return lines, error
    return lines, None


def test_no_delegation_stops_with_the_ns_records_to_set(aws_env: str) -> None:
    asked: list[str] = []

    def not_delegated(apex: str) -> list[str]:
        asked.append(apex)
        return ["ns1.porkbun.com", "ns2.porkbun.com"]  # still the registrar's own

    lines, error = apply(not_delegated)
    assert asked == [APEX]
    assert error is not None and "set the 4 NS records above at porkbun" in str(error)
    said = lines.index(next(line for line in lines if "is not delegated" in line))
    assert "answers NS [ns1.porkbun.com ns2.porkbun.com]" in lines[said]
    assert lines[said + 1 : said + 5] == [f"    {APEX}. NS {ns}." for ns in zone_ns()]
    assert not any("waiting for the ACM certificate" in line for line in lines)

    lines, error = apply(lambda apex: zone_ns())  # the registrar now delegates: resumes
    assert error is None, lines


def test_a_delegated_zone_passes_the_check(aws_env: str) -> None:
    lines, error = apply(lambda apex: zone_ns())
    assert error is None, lines
    assert any(f"NS delegation of {APEX}: " in line and "(the zone's)" in line for line in lines)


def test_a_delegation_that_cannot_be_checked_is_said_and_apply_goes_on(aws_env: str) -> None:
    def offline(apex: str) -> list[str]:
        raise DnsError("no nameserver in /etc/resolv.conf: pass --resolver HOST:PORT")

    lines, error = apply(offline)
    assert error is None, lines
    assert any(f"! NS delegation of {APEX}: could not check (no nameserver" in x for x in lines)
