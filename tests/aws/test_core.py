"""The reconciler's core without AWS: plan rendering, waits, endpoint choice."""

from __future__ import annotations

import pytest

from jobtory_stack.aws import database
from jobtory_stack.aws.client import Endpoint, resolve_endpoint
from jobtory_stack.aws.core import Ctx
from jobtory_stack.aws.plan import Change, field_diffs, render_plan
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment
from tests.helpers import ROOT

pytestmark = pytest.mark.aws


def env(name: str = "local") -> Environment:
    return load_stack(ROOT / "stack.toml").env(name)


def test_plan_rendering() -> None:
    changes = [
        Change("create", "vpc", "jobtory-prod-vpc", ("cidr: 10.20.0.0/16",)),
        Change(
            "update",
            "autoscaling_group",
            "jobtory-prod-asg",
            field_diffs({"max_size": 6, "min_size": 2}, {"max_size": 4, "min_size": 2}),
        ),
        Change("delete", "listener", "jobtory-prod-alb:8080"),
    ]
    assert render_plan(changes) == [
        "+ create vpc jobtory-prod-vpc",
        "    cidr: 10.20.0.0/16",
        "~ update autoscaling_group jobtory-prod-asg",
        "    max_size: 4 -> 6",
        "- delete listener jobtory-prod-alb:8080",
        "Plan: 1 to add, 1 to change, 1 to destroy.",
    ]
    assert render_plan([]) == ["No changes."]


def test_wait_is_bounded_and_reports_progress() -> None:
    lines: list[str] = []
    ctx = Ctx(env(), Endpoint("http://127.0.0.1:1", "moto"), out=lines.append, poll_seconds=0.01)
    with pytest.raises(AwsError, match=r"timed out after 0s waiting for the thing"):
        ctx.wait_for("the thing", lambda: "PENDING_VALIDATION", timeout=0.05)
    assert lines[0].startswith("  waiting for the thing: PENDING_VALIDATION")
    states = iter(["creating", "backing-up", None])
    ctx.wait_for("db", lambda: next(states), timeout=5)
    assert [line.split(":")[1].split("(")[0].strip() for line in lines[1:]] == [
        "creating",
        "backing-up",
    ]


def test_a_long_wait_prints_its_status_every_progress_interval() -> None:
    lines: list[str] = []
    ctx = Ctx(env(), Endpoint("http://127.0.0.1:1", "moto"), out=lines.append, poll_seconds=10)
    now = [0.0]
    ctx.clock = lambda: now[0]
    ctx.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    ctx.progress_seconds = 60
    with pytest.raises(AwsError, match="timed out after 300s"):
        ctx.wait_for("db_instance x", lambda: "creating", timeout=300)
    assert [line.rsplit("(", 1)[1] for line in lines] == [
        f"{t}s)" for t in (0, 60, 120, 180, 240, 300)
    ]


def test_the_database_wait_is_sized_for_multi_az(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBTORY_RDS_WAIT_TIMEOUT", raising=False)
    prod, staging = Ctx(env("prod")), Ctx(env("staging"))
    assert prod.env.rds.multi_az and not staging.env.rds.multi_az
    assert database.wait_timeout(prod) == 3600  # a Multi-AZ create outlasts 15 min
    assert database.wait_timeout(staging) == staging.wait_timeout
    monkeypatch.setenv("JOBTORY_RDS_WAIT_TIMEOUT", "5400")
    assert database.wait_timeout(prod) == database.wait_timeout(staging) == 5400


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    local = env("local")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("JOBTORY_AWS_EMULATOR", raising=False)
    assert resolve_endpoint(local) == Endpoint("http://127.0.0.1:4566", "moto")
    assert resolve_endpoint(env("prod")) == Endpoint(None, None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws:4566")
    assert resolve_endpoint(local).url == "http://aws:4566"
    assert resolve_endpoint(local, "http://x:1").url == "http://x:1"


def test_an_endpoint_alone_is_not_an_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A VPC endpoint or a proxy in front of AWS: no emulator workaround may run there."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("JOBTORY_AWS_EMULATOR", raising=False)
    prod = env("prod")
    endpoint = resolve_endpoint(prod, "https://ec2.ap-northeast-2.amazonaws.com")
    assert endpoint.emulator is None
    assert not Ctx(prod, endpoint).emulator
    monkeypatch.setenv("JOBTORY_AWS_EMULATOR", "moto")  # said explicitly: an emulator
    assert Ctx(prod, resolve_endpoint(prod, "http://127.0.0.1:4566")).emulator
    monkeypatch.setenv("JOBTORY_AWS_EMULATOR", "magic")
    with pytest.raises(AwsError, match="JOBTORY_AWS_EMULATOR='magic'"):
        resolve_endpoint(prod, "http://127.0.0.1:4566")


def test_engine_version_comparison() -> None:
    from jobtory_stack.aws.database import effective_version

    assert effective_version("17.6", "17.6") == "17.6"
    assert effective_version("17.6", "17.7") == "17.6"  # RDS auto minor upgrade: fine
    assert effective_version("17.6", "17.5") == "17.5"  # behind: shows as a diff
    assert effective_version("17", "17.6") == "17"
    assert effective_version("17.6", "16.9") == "16.9"  # major differs: a diff
