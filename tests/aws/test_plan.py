"""The plan model: Refs (known after apply), JSON round trip, apply = exactly the plan."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobtory_stack.aws import reconcile
from jobtory_stack.aws.client import Endpoint
from jobtory_stack.aws.core import READ_PREFIXES, Ctx, new_ctx
from jobtory_stack.aws.plan import (
    KNOWN_AFTER_APPLY,
    Change,
    Plan,
    Ref,
    Secret,
    field_diffs,
    refs,
    render_plan,
    resolve,
)
from jobtory_stack.aws.report import Reporter
from jobtory_stack.errors import AwsError
from jobtory_stack.spec.loader import load_stack
from jobtory_stack.spec.model import Environment
from tests.helpers import ROOT

pytestmark = pytest.mark.aws

ENV = "staging"


def env(name: str = ENV) -> Environment:
    return load_stack(ROOT / "stack.toml").env(name)


def sample_plan() -> Plan:
    return Plan(
        (
            Change(
                "create",
                "vpc",
                "jobtory-staging-vpc",
                ("cidr: 10.30.0.0/16",),
                {
                    "CreateVpc": {"CidrBlock": "10.30.0.0/16", "TagSpecifications": []},
                    "ModifyVpcAttribute": {
                        "VpcId": Ref("vpc"),
                        "EnableDnsHostnames": {"Value": True},
                    },
                },
                ("vpc",),
            ),
            Change(
                "create",
                "subnet",
                "jobtory-staging-public-a",
                (),
                {"CreateSubnet": {"VpcId": Ref("vpc"), "CidrBlock": "10.30.0.0/24"}},
                ("subnet:public-a",),
            ),
            Change(
                "create",
                "db_instance",
                "jobtory-staging-db",
                ("master password: SecureString in SSM (never shown)",),
                {
                    "CreateDBInstance": {
                        "MasterUserPassword": Secret("DB_PASSWORD"),
                        "AllocatedStorage": 20,
                        "MultiAZ": False,
                        "Tags": [{"Key": "env", "Value": "staging"}],
                    },
                    "TerminateInstanceInAutoScalingGroup": [{"InstanceId": "i-1"}],
                    "PutScalingPolicy": {"TargetValue": 50.0, "Nothing": None},
                },
                ("db_endpoint",),
                ("! a remark",),
            ),
        ),
        stack="jobtory",
        env="staging",
    )


# ---- the model, without AWS ----------------------------------------------------------------


def test_a_saved_plan_round_trips_losslessly(tmp_path: Path) -> None:
    plan = sample_plan()
    saved = tmp_path / "plan.json"
    saved.write_text(plan.to_json())
    loaded = Plan.from_json(saved.read_text())
    assert loaded == plan
    assert isinstance(loaded.changes[1].params["CreateSubnet"]["VpcId"], Ref)
    document = json.loads(saved.read_text())
    assert document["changes"][1]["params"]["CreateSubnet"]["VpcId"] == {"$ref": "vpc"}
    password = document["changes"][2]["params"]["CreateDBInstance"]["MasterUserPassword"]
    assert password == {"$secret": "DB_PASSWORD"}  # the value is never in a plan
    with pytest.raises(AwsError, match="not a saved plan"):
        Plan.from_json('{"changes": []}')
    with pytest.raises(AwsError, match="invalid JSON"):
        Plan.from_json("{")


def test_params_hold_json_values_and_refs_only() -> None:
    change = Change("create", "x", "y", params={"A": ("b", 1)})
    assert change.params == {"A": ["b", 1]}  # tuples become lists: the JSON form
    with pytest.raises(TypeError, match="not a plan value"):
        Change("create", "x", "y", params={"A": {1, 2}})
    with pytest.raises(ValueError, match="unknown action"):
        Change("replace", "x", "y")  # type: ignore[arg-type]


def test_refs_print_as_known_after_apply_and_resolve_from_ids() -> None:
    diffs = field_diffs({"target_group": Ref("tg")}, {"target_group": None})
    change = Change("create", "listener", "alb:443", diffs)
    assert render_plan([change])[1] == f"    target_group: (none) -> {KNOWN_AFTER_APPLY}"
    params = {"A": [{"B": Ref("vpc")}], "C": Secret("S")}
    assert sorted(refs(params)) == ["vpc"]
    assert resolve(params, {"vpc": "vpc-1"}, {"S": "x"}) == {"A": [{"B": "vpc-1"}], "C": "x"}
    with pytest.raises(AwsError, match="vpc is not known"):
        resolve(params, {}, {"S": "x"})


def test_a_ref_must_be_produced_by_an_earlier_change() -> None:
    plan = sample_plan()
    assert plan.unresolved() == []
    cut = Plan(plan.changes[1:])  # the VPC's change left out
    assert cut.unresolved() == ["create subnet jobtory-staging-public-a: vpc"]
    assert cut.unresolved(known={"vpc"}) == []


def test_reporter_holds_plan_time_lines_per_family() -> None:
    lines: list[str] = []
    report = Reporter(lines.append)
    with report.hold():
        with report.section("params"):
            report.note("! a missing secret")
        with report.section("scaling"):
            report.line("! an emulator remark")
    assert lines == []
    report.release("params")
    report.line("params: up to date")
    report.release("network")  # nothing held there
    report.release("scaling")
    assert lines == ["! a missing secret", "params: up to date", "! an emulator remark"]
    assert report.notes == ["! a missing secret"]
    report.progress("db", "creating", 3.2)
    assert lines[-1] == "  waiting for db: creating (3s)"


def test_apply_refuses_a_plan_it_cannot_execute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked before any call: another environment, a Ref nothing creates, disorder."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    ctx = Ctx(env(), Endpoint("http://127.0.0.1:1", "moto"), out=lambda line: None)
    plan = sample_plan()
    with pytest.raises(AwsError, match="the plan is for jobtory staging, not jobtory prod"):
        reconcile.apply(Ctx(env("prod"), ctx.endpoint, out=lambda line: None), plan)
    with pytest.raises(AwsError, match="values no earlier change of it creates"):
        reconcile.apply(ctx, Plan(plan.changes[1:2]))
    reversed_order = Plan((plan.changes[2], plan.changes[0]))
    with pytest.raises(AwsError, match="not in dependency order at create vpc"):
        reconcile.apply(ctx, reversed_order)


# ---- against moto --------------------------------------------------------------------------


@pytest.fixture
def calls(client_hook: Callable[[Callable[[Any], None]], None]) -> list[str]:
    """Every API call the reconciler makes (names)."""
    seen: list[str] = []
    client_hook(
        lambda c: c.meta.events.register("before-call", lambda model, **_: seen.append(model.name))
    )
    return seen


def fresh_ctx(lines: list[str] | None = None) -> Ctx:
    ctx = new_ctx(env(), out=(lines.append if lines is not None else lambda line: None))
    ctx.poll_seconds = 0.05
    return ctx


def mutating(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith(READ_PREFIXES)]


@pytest.fixture
def per_change(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> Iterator[list[tuple[Change, list[str]]]]:
    """(change, the API calls made while applying it) for every change apply executes."""
    applied: list[tuple[Change, list[str]]] = []
    original = reconcile.apply_change

    def recording(ctx: Ctx, change: Change) -> None:
        start = len(calls)
        try:
            original(ctx, change)
        finally:
            applied.append((change, calls[start:]))

    monkeypatch.setattr(reconcile, "apply_change", recording)
    yield applied


def test_a_fresh_plan_refers_to_what_earlier_changes_create_and_applies_exactly(
    aws_env: str, calls: list[str], per_change: list[tuple[Change, list[str]]]
) -> None:
    lines: list[str] = []
    ctx = fresh_ctx(lines)
    plan = reconcile.plan(ctx)
    assert mutating(calls) == []  # planning changes nothing
    by_title = {c.title: c for c in plan}
    subnet = by_title["create subnet jobtory-staging-public-a"]
    assert subnet.params["CreateSubnet"]["VpcId"] == Ref("vpc")
    group = by_title["create db_subnet_group jobtory-staging-db-subnets"]
    assert group.params["CreateDBSubnetGroup"]["SubnetIds"] == [
        Ref("subnet:private-a"),
        Ref("subnet:private-c"),
    ]
    ec2_group = by_title["create security_group jobtory-staging-ec2"]
    source = ec2_group.params["AuthorizeSecurityGroupIngress"]["IpPermissions"][0]
    assert source["UserIdGroupPairs"] == [{"GroupId": Ref("sg:alb")}]
    db_host = by_title["create ssm_parameter /jobtory/staging/DB_HOST"]
    assert db_host.params["PutParameter"]["Value"] == Ref("db_endpoint")
    assert plan.unresolved() == []
    rendered = render_plan(plan)
    assert "    value: (known after apply)" in rendered  # DB_HOST
    assert "    target_group: (known after apply)" in rendered  # the HTTPS listener
    assert "    -> (known after apply)" in rendered  # the alias to the ALB

    calls.clear()
    assert reconcile.apply(ctx, plan) is plan
    assert [change for change, _ in per_change] == list(plan)  # in order, nothing else
    for change, made in per_change:
        planned = set(change.params)
        assert set(mutating(made)) <= planned, change.title  # no call the plan did not name
        assert {op for op in planned if not op.startswith(READ_PREFIXES)} <= set(made)
    assert lines[-1] == "Applied: 42 to add, 0 to change, 0 to destroy."  # 1: the release store

    calls.clear()
    again = fresh_ctx()
    assert list(reconcile.apply(again)) == []
    assert mutating(calls) == []


def test_a_saved_plan_applies_later_and_converges(
    aws_env: str, tmp_path: Path, calls: list[str]
) -> None:
    planner = fresh_ctx()
    planner.read_only = True  # `deploy.py plan`
    saved = tmp_path / "plan.json"
    saved.write_text(reconcile.plan(planner).to_json())
    assert mutating(calls) == []

    loaded = Plan.from_json(saved.read_text())
    lines: list[str] = []
    reconcile.apply(fresh_ctx(lines), loaded)  # another process: only the plan is shared
    assert f"Applied: {len(loaded)} to add, 0 to change, 0 to destroy." in lines
    assert list(reconcile.plan(fresh_ctx())) == []

    # a drift, planned, saved and applied later: exactly that change
    ctx = fresh_ctx()
    autoscaling = ctx.autoscaling
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="jobtory-staging-asg", MaxSize=6)
    drift = Plan.from_json(reconcile.plan(fresh_ctx()).to_json())
    assert [c.title for c in drift] == ["update autoscaling_group jobtory-staging-asg"]
    calls.clear()
    reconcile.apply(fresh_ctx(), drift)
    assert mutating(calls) == ["UpdateAutoScalingGroup"]
    assert list(reconcile.plan(fresh_ctx())) == []
