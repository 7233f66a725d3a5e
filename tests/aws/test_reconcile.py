"""plan / apply / destroy / status against a real moto server process."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobtory_stack.cli import main
from tests.helpers import ROOT, stub_release

pytestmark = pytest.mark.aws

SPEC = ROOT / "stack.toml"
REGION = "ap-northeast-2"
ENV = "staging"
OWNER = [{"Name": "tag:stack", "Values": ["jobtory"]}, {"Name": "tag:env", "Values": [ENV]}]
Run = Callable[..., tuple[int, str, str]]


# staging waives the protected rules on purpose, and every command says so on stderr
# (tests/unit/test_spec.py); `run` leaves that line out of what the tests compare
WAIVER = f"environments.{ENV}.protected: WARNING: "


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def go(*argv: str, spec: Path = SPEC) -> tuple[int, str, str]:
        code = main([argv[0], "--spec", str(spec), "--env", ENV, *argv[1:]])
        captured = capsys.readouterr()
        lines = captured.err.splitlines(keepends=True)
        return code, captured.out, "".join(x for x in lines if not x.startswith(WAIVER))

    return go


@pytest.fixture
def applied(aws_env: str, run: Run) -> str:
    code, out, err = run("apply")
    assert code == 0, err
    return out


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def groups() -> dict[str, dict[str, Any]]:
    ec2 = client("ec2")
    found = ec2.describe_security_groups(Filters=OWNER)["SecurityGroups"]
    return {g["GroupName"].removeprefix(f"jobtory-{ENV}-"): g for g in found}


def ingress(group: dict[str, Any]) -> set[tuple[int, str]]:
    rules = set()
    for perm in group["IpPermissions"]:
        for r in perm.get("IpRanges", []):
            rules.add((perm["FromPort"], r["CidrIp"]))
        for pair in perm.get("UserIdGroupPairs", []):
            rules.add((perm["FromPort"], pair["GroupId"]))
    return rules


# ---- a full apply --------------------------------------------------------------------------


def test_apply_creates_every_resource(applied: str) -> None:
    ec2, rds, elbv2 = client("ec2"), client("rds"), client("elbv2")
    # network: the security group chain alb -> ec2 -> rds, open only on the ALB's 80/443
    sg = groups()
    assert set(sg) == {"alb", "ec2", "rds"}
    assert ingress(sg["alb"]) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert ingress(sg["ec2"]) == {(80, sg["alb"]["GroupId"])}
    assert ingress(sg["rds"]) == {(5432, sg["ec2"]["GroupId"])}
    vpc = ec2.describe_vpcs(Filters=OWNER)["Vpcs"][0]
    everything = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    )["SecurityGroups"]
    open_to_world = {
        (g["GroupName"], port) for g in everything for port, src in ingress(g) if src == "0.0.0.0/0"
    }
    assert open_to_world == {(f"jobtory-{ENV}-alb", 80), (f"jobtory-{ENV}-alb", 443)}
    subnets = ec2.describe_subnets(Filters=OWNER)["Subnets"]
    assert len(subnets) == 4 and len({s["AvailabilityZone"] for s in subnets}) == 2
    assert ec2.describe_internet_gateways(Filters=OWNER)["InternetGateways"][0]["Attachments"]

    # database: private, encrypted, the engine's family, the spec's parameters
    db = rds.describe_db_instances(DBInstanceIdentifier=f"jobtory-{ENV}-db")["DBInstances"][0]
    assert db["PubliclyAccessible"] is False
    assert db["StorageEncrypted"] is True
    assert db["VpcSecurityGroups"][0]["VpcSecurityGroupId"] == sg["rds"]["GroupId"]
    pg_name = db["DBParameterGroups"][0]["DBParameterGroupName"]
    pg = rds.describe_db_parameter_groups(DBParameterGroupName=pg_name)["DBParameterGroups"][0]
    assert pg["DBParameterGroupFamily"] == "postgres17"
    params = {
        p["ParameterName"]: p
        for p in rds.describe_db_parameters(DBParameterGroupName=pg_name)["Parameters"]
    }
    assert params["timezone"]["ParameterValue"] == "Asia/Seoul"
    assert params["timezone"]["ApplyMethod"] == "immediate"
    assert params["max_connections"]["ParameterValue"] == "200"
    assert params["max_connections"]["ApplyMethod"] == "pending-reboot"
    ssm = client("ssm")
    db_host = ssm.get_parameter(Name=f"/jobtory/{ENV}/DB_HOST")["Parameter"]["Value"]
    assert db_host == db["Endpoint"]["Address"]
    password = ssm.get_parameter(Name=f"/jobtory/{ENV}/DB_PASSWORD", WithDecryption=True)
    assert password["Parameter"]["Type"] == "SecureString"
    assert password["Parameter"]["Value"] not in applied

    # certificate + DNS: validation records in the zone, aliases to the ALB
    acm = client("acm")
    cert_arn = acm.list_certificates()["CertificateSummaryList"][0]["CertificateArn"]
    cert = acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]
    assert cert["Status"] == "ISSUED"
    route53 = client("route53")
    zone = route53.list_hosted_zones_by_name(DNSName="staging.jobtory.com.")["HostedZones"][0]
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    by_key = {(r["Name"], r["Type"]): r for r in records}
    for option in cert["DomainValidationOptions"]:
        rr = option["ResourceRecord"]
        key = (rr["Name"].rstrip(".") + ".", "CNAME")
        assert by_key[key]["ResourceRecords"][0]["Value"] == rr["Value"]
    alb = elbv2.describe_load_balancers(Names=[f"jobtory-{ENV}-alb"])["LoadBalancers"][0]
    alias = by_key[("staging.jobtory.com.", "A")]["AliasTarget"]
    assert alias["DNSName"].rstrip(".") == alb["DNSName"]
    assert "NS records at the registrar" in applied

    # load balancer: 443 with the certificate and policy, 80 redirects, health checks
    assert alb["Scheme"] == "internet-facing"
    assert alb["SecurityGroups"] == [sg["alb"]["GroupId"]]
    listeners = {
        listener["Port"]: listener
        for listener in elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])[
            "Listeners"
        ]
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"][0]["CertificateArn"] == cert_arn
    assert listeners[443]["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    attrs = {
        a["Key"]: a["Value"]
        for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=alb["LoadBalancerArn"])[
            "Attributes"
        ]
    }
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    tg = elbv2.describe_target_groups(Names=[f"jobtory-{ENV}-tg"])["TargetGroups"][0]
    assert (tg["Protocol"], tg["Port"]) == ("HTTP", 80)
    assert tg["HealthCheckPath"] == "/healthz"
    assert tg["HealthCheckIntervalSeconds"] == 15
    assert tg["HealthCheckTimeoutSeconds"] == 5
    assert tg["HealthyThresholdCount"] == 3
    assert tg["UnhealthyThresholdCount"] == 2
    assert tg["Matcher"]["HttpCode"] == "200"
    tg_attrs = {
        a["Key"]: a["Value"]
        for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])[
            "Attributes"
        ]
    }
    assert tg_attrs["deregistration_delay.timeout_seconds"] == "30"

    # scaling: ASG sizes, ELB health checks, CPU policy, IMDSv2, the pyinfra bootstrap
    autoscaling = client("autoscaling")
    asg = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[f"jobtory-{ENV}-asg"])[
        "AutoScalingGroups"
    ][0]
    assert (asg["MinSize"], asg["DesiredCapacity"], asg["MaxSize"]) == (1, 1, 2)
    assert asg["HealthCheckType"] == "ELB"
    assert asg["TargetGroupARNs"] == [tg["TargetGroupArn"]]
    policy = autoscaling.describe_policies(AutoScalingGroupName=asg["AutoScalingGroupName"])[
        "ScalingPolicies"
    ][0]
    config = policy["TargetTrackingConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ASGAverageCPUUtilization"
    )
    assert config["TargetValue"] == 50.0
    version = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"jobtory-{ENV}-lt", Versions=["$Default"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert version["MetadataOptions"]["HttpTokens"] == "required"
    script = base64.b64decode(version["UserData"]).decode()
    assert "-y @local pyinfra/deploy.py" in script and "python3-venv" in script
    assert "VERSION=unreleased" in script  # no --release given: the emulator's placeholder
    assert "moto lacks" not in applied  # nothing to replace on a first apply
    iam = client("iam")
    doc = iam.get_role_policy(RoleName=f"jobtory-{ENV}-ec2", PolicyName="ssm-read")
    statement = doc["PolicyDocument"]["Statement"]
    assert statement[0]["Resource"][1].endswith(f":parameter/jobtory/{ENV}/*")
    assert statement[1]["Action"] == "kms:Decrypt"


def test_second_apply_plan_and_status_make_no_mutating_call(
    applied: str, run: Run, mutations: list[str]
) -> None:
    code, out, _ = run("apply")
    assert code == 0
    assert mutations == []
    assert "no changes" in out
    code, out, _ = run("plan")
    assert out.strip().endswith("No changes.")
    code, out, _ = run("status")
    assert code == 0
    assert "network: vpc" in out
    assert f"database: jobtory-{ENV}-db available" in out
    assert "certificate: ISSUED" in out
    assert f"scaling: jobtory-{ENV}-asg min 1 desired 1 max 2" in out
    assert mutations == []


def test_drift_shows_in_plan_and_apply_fixes_it(applied: str, run: Run) -> None:
    ec2, rds, autoscaling = client("ec2"), client("rds"), client("autoscaling")
    sg = groups()
    ec2.revoke_security_group_ingress(
        GroupId=sg["alb"]["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=sg["ec2"]["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName=f"jobtory-{ENV}-postgres17",
        Parameters=[
            {"ParameterName": "timezone", "ParameterValue": "UTC", "ApplyMethod": "immediate"}
        ],
    )
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=f"jobtory-{ENV}-asg", MaxSize=6)

    code, out, _ = run("plan")
    assert code == 0
    changes = [line for line in out.splitlines() if line[:2] in {"+ ", "~ ", "- "}]
    assert changes == [
        f"~ update security_group jobtory-{ENV}-alb",
        f"~ update security_group jobtory-{ENV}-ec2",
        f"~ update db_parameter_group jobtory-{ENV}-postgres17",
        f"~ update autoscaling_group jobtory-{ENV}-asg",
    ]
    assert "    + ingress tcp/443 from 0.0.0.0/0" in out
    assert "    - ingress tcp/22 from 0.0.0.0/0" in out
    assert "    timezone: UTC -> Asia/Seoul" in out
    assert "    max_size: 6 -> 2" in out
    assert out.strip().endswith("Plan: 0 to add, 4 to change, 0 to destroy.")

    code, out, _ = run("apply")
    assert code == 0 and "Applied: 0 to add, 4 to change, 0 to destroy." in out
    sg = groups()
    assert ingress(sg["alb"]) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert ingress(sg["ec2"]) == {(80, sg["alb"]["GroupId"])}
    code, out, _ = run("plan")
    assert out.strip().endswith("No changes.")


def test_ipv6_and_all_traffic_rules_are_drift_too(applied: str, run: Run) -> None:
    ec2 = client("ec2")
    sg = groups()
    ec2.authorize_security_group_ingress(
        GroupId=sg["ec2"]["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ],
    )
    every_port = {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535}
    ec2.authorize_security_group_ingress(
        GroupId=sg["rds"]["GroupId"],
        IpPermissions=[{**every_port, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )
    code, out, _ = run("plan")
    assert code == 0
    assert "    - ingress tcp/22 from ::/0" in out
    assert "    - ingress all traffic from 0.0.0.0/0" in out
    assert "    - ingress tcp/0-65535 from 10.0.0.0/8" in out
    assert out.strip().endswith("Plan: 0 to add, 2 to change, 0 to destroy.")

    code, out, err = run("apply")
    assert code == 0, err
    sg = groups()
    assert [
        p for p in sg["ec2"]["IpPermissions"] if p.get("Ipv6Ranges") or p["IpProtocol"] == "-1"
    ] == []
    assert ingress(sg["ec2"]) == {(80, sg["alb"]["GroupId"])}
    assert ingress(sg["rds"]) == {(5432, sg["ec2"]["GroupId"])}
    code, out, _ = run("plan")
    assert out.strip().endswith("No changes.")


def test_a_new_template_version_moves_the_group_and_launches_from_it(
    applied: str, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hosts.strategy inplace (the default): a new version, the group moved to it, the
    running instances left to `deploy.py hosts`; the patched emulator launches from it."""
    autoscaling, ec2 = client("autoscaling"), client("ec2")
    name = f"jobtory-{ENV}-asg"

    def group() -> Any:
        return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ][0]

    before = {i["InstanceId"] for i in group()["Instances"]}
    stub_release("v2", ENV)  # published: its manifest's sha256 goes into the user data
    monkeypatch.setenv("JOBTORY_RELEASE_VERSION", "v2")  # a new release -> new user data
    code, out, _ = run("plan")
    assert f"~ update launch_template jobtory-{ENV}-lt" in out  # a version, not a replacement
    assert "user_data: changed" in out
    assert "running instances: in place by `deploy.py hosts`" in out
    assert "launch_template_version: 1 -> (new)" in out
    code, out, err = run("apply")
    assert code == 0, err
    assert "updates them in place" in out
    assert group()["LaunchTemplate"]["Version"] == "2"
    assert {i["InstanceId"] for i in group()["Instances"]} == before  # not replaced
    lt = ec2.describe_launch_template_versions(
        LaunchTemplateName=f"jobtory-{ENV}-lt", Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    assert lt["VersionNumber"] == 2
    assert "\nVERSION=v2\n" in base64.b64decode(lt["LaunchTemplateData"]["UserData"]).decode()
    code, out, _ = run("plan")
    assert out.strip().endswith("No changes.")

    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)  # scale out
    added = {i["InstanceId"] for i in group()["Instances"]} - before
    assert len(added) == 1
    tags = ec2.describe_instances(InstanceIds=list(added))["Reservations"][0]["Instances"][0]
    config = {t["Key"]: t["Value"] for t in group()["Tags"]}["launch-template-config"]
    assert {"Key": "launch-template-config", "Value": config} in tags["Tags"]


# ---- destroy -------------------------------------------------------------------------------


def test_destroy_removes_exactly_what_is_tagged(
    applied: str, run: Run, client_hook: Callable[[Callable[[Any], None]], None]
) -> None:
    ec2, ssm = client("ec2"), client("ssm")
    draining: list[str] = []

    def still_draining(model: Any, **_: Any) -> None:  # like a deleted ALB's ENIs on AWS
        if model.name == "DeleteSubnet" and not draining:
            draining.append(model.name)
            raise ClientError(
                {"Error": {"Code": "DependencyViolation", "Message": "in use"}}, model.name
            )

    client_hook(lambda c: c.meta.events.register("before-call", still_draining))
    decoy_vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    decoy_sg = ec2.create_security_group(
        GroupName="decoy", Description="not ours", VpcId=decoy_vpc
    )["GroupId"]
    ssm.put_parameter(Name=f"/jobtory/{ENV}/DECOY", Value="keep", Type="String")
    other_env = ec2.create_vpc(
        CidrBlock="10.98.0.0/16",
        TagSpecifications=[
            {
                "ResourceType": "vpc",
                "Tags": [{"Key": "stack", "Value": "jobtory"}, {"Key": "env", "Value": "other"}],
            }
        ],
    )["Vpc"]["VpcId"]

    code, out, err = run("destroy", "--yes")
    assert code == 0, err
    assert "Destroyed" in out
    assert "DependencyViolation, dependents still draining" in out  # retried, not failed

    assert ec2.describe_vpcs(Filters=OWNER)["Vpcs"] == []
    assert ec2.describe_security_groups(Filters=OWNER)["SecurityGroups"] == []
    assert ec2.describe_subnets(Filters=OWNER)["Subnets"] == []
    assert ec2.describe_internet_gateways(Filters=OWNER)["InternetGateways"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert client("elbv2").describe_target_groups()["TargetGroups"] == []
    assert client("rds").describe_db_instances()["DBInstances"] == []
    assert client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert client("acm").list_certificates()["CertificateSummaryList"] == []
    assert client("route53").list_hosted_zones()["HostedZones"] == []
    with pytest.raises(ClientError):
        client("iam").get_role(RoleName=f"jobtory-{ENV}-ec2")
    left = ssm.get_parameters_by_path(Path=f"/jobtory/{ENV}/", Recursive=True)["Parameters"]
    assert [p["Name"] for p in left] == [f"/jobtory/{ENV}/DECOY"]
    tagged = client("resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "stack", "Values": ["jobtory"]}, {"Key": "env", "Values": [ENV]}]
    )["ResourceTagMappingList"]
    instances = [
        m["ResourceARN"].rsplit("/", 1)[1] for m in tagged if ":instance/" in m["ResourceARN"]
    ]
    # the database's snapshots stay on purpose (its final one, automated backups)
    snapshots = [m["ResourceARN"] for m in tagged if ":snapshot:" in m["ResourceARN"]]
    assert any(f":snapshot:jobtory-{ENV}-db-final-" in arn for arn in snapshots)
    left_tagged = [m for m in tagged if ":instance/" not in m["ResourceARN"]]
    assert [m for m in left_tagged if ":snapshot:" not in m["ResourceARN"]] == []
    if instances:  # terminated instances stay visible (with their tags) for a while, as on AWS
        states = {
            i["State"]["Name"]
            for r in ec2.describe_instances(InstanceIds=instances)["Reservations"]
            for i in r["Instances"]
        }
        assert states == {"terminated"}
    # the decoys are untouched
    assert ec2.describe_security_groups(GroupIds=[decoy_sg])["SecurityGroups"]
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} >= {decoy_vpc, other_env}

    code, out, _ = run("plan")
    assert "Plan: " in out and "to add" in out


def test_destroy_refuses_prod_without_the_flag(
    aws_env: str, capsys: pytest.CaptureFixture[str], api_calls: list[str]
) -> None:
    code = main(["destroy", "--spec", str(SPEC), "--env", "prod"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == (
        "error: destroy needs a confirmation and there is no terminal to ask on: pass --yes "
        "--confirm-env prod to destroy prod (a protected environment)"
    )
    assert api_calls == []  # refused before anything is read from AWS


# ---- failures ------------------------------------------------------------------------------


def test_failure_half_way_then_rerun_converges(
    aws_env: str,
    run: Run,
    client_hook: Callable[[Callable[[Any], None]], None],
    mutations: list[str],
) -> None:
    failed: list[str] = []

    def fail_once(model: Any, **_: Any) -> None:
        if model.name == "CreateListener" and not failed:
            failed.append(model.name)
            raise ClientError(
                {"Error": {"Code": "InternalFailure", "Message": "injected"}}, model.name
            )

    client_hook(lambda c: c.meta.events.register("before-call", fail_once))
    code, out, err = run("apply")
    assert code == 1
    assert err.strip() == "error: CreateListener failed (InternalFailure): injected"
    assert "+ load_balancer" in out

    code, out, err = run("apply")
    assert code == 0, err
    assert "dns/certs: up to date" in out and "+ listener" in out
    mutations.clear()
    code, out, _ = run("apply")
    assert "no changes" in out and mutations == []


def test_bad_credentials_are_one_line(
    aws_env: str, run: Run, client_hook: Callable[[Callable[[Any], None]], None]
) -> None:
    def reject(model: Any, **_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "InvalidClientTokenId", "Message": "The security token ..."}},
            model.name,
        )

    client_hook(lambda c: c.meta.events.register("before-call", reject))
    code, _, err = run("plan")
    assert code == 1
    assert err == (
        "error: AWS rejected the credentials (InvalidClientTokenId): "
        "check AWS_PROFILE / AWS_ACCESS_KEY_ID\n"
    )


def test_unknown_region_is_refused_before_any_call(
    aws_env: str, run: Run, tmp_path: Path, mutations: list[str]
) -> None:
    spec = tmp_path / "stack.toml"
    spec.write_text(SPEC.read_text().replace("ap-northeast-2", "ap-nowhere-9"))
    code, _, err = run("plan", spec=spec)
    assert code == 1
    assert err.startswith("error: unknown AWS region 'ap-nowhere-9' (stack.region in the spec)")
    assert len(err.splitlines()) == 1


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def throttle(times: int, seen: list[str]) -> Callable[[Any], None]:
    from botocore.awsrequest import AWSResponse

    body = (
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        b"<Message>Request limit exceeded.</Message></Error></Errors>"
        b"<RequestID>x</RequestID></Response>"
    )

    def before_send(request: Any, **_: Any) -> Any:
        seen.append("DescribeVpcs")
        if len(seen) <= times:
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    return lambda c: c.meta.events.register("before-send.ec2.DescribeVpcs", before_send)


def test_throttling_is_retried(
    aws_env: str, run: Run, client_hook: Callable[[Callable[[Any], None]], None]
) -> None:
    seen: list[str] = []
    client_hook(throttle(1, seen))
    code, out, err = run("plan")
    assert code == 0, err
    assert seen[:2] == ["DescribeVpcs", "DescribeVpcs"]  # throttled once, then retried
    assert "Plan: " in out


def test_persistent_throttling_is_one_line(
    aws_env: str,
    run: Run,
    client_hook: Callable[[Callable[[Any], None]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.config import Config

    from jobtory_stack.aws import client

    monkeypatch.setattr(
        client, "RETRY_CONFIG", Config(retries={"mode": "standard", "max_attempts": 2})
    )
    seen: list[str] = []
    client_hook(throttle(99, seen))
    code, _, err = run("plan")
    assert code == 1
    assert err.startswith("error: AWS kept throttling DescribeVpcs (RequestLimitExceeded)")
    assert len(err.splitlines()) == 1


def test_local_env_apply_is_idempotent(
    aws_env: str, capsys: pytest.CaptureFixture[str], mutations: list[str], tmp_path: Path
) -> None:
    """The replica's init: `apply --env local --secrets-file` (or `params sync` first)."""
    secrets = tmp_path / "secrets.json"
    local = ["--spec", str(SPEC), "--env", "local", "--secrets-file", str(secrets)]
    assert main(["plan", *local]) == 0
    assert not secrets.exists()  # plan writes nothing
    assert main(["apply", *local]) == 0
    stored = json.loads(secrets.read_text())
    ssm = client("ssm")
    for name, value in stored.items():
        got = ssm.get_parameter(Name=f"/jobtory/local/{name}", WithDecryption=True)["Parameter"]
        assert (got["Value"], got["Type"]) == (value, "SecureString")
    assert ssm.get_parameter(Name="/jobtory/local/DB_HOST")["Parameter"]["Value"] == "db"
    capsys.readouterr()
    mutations.clear()
    assert main(["apply", *local]) == 0
    assert main(["params", "sync", *local]) == 0
    out = capsys.readouterr().out
    assert "no changes" in out and "0 created, 0 updated, 0 deleted" in out
    assert mutations == []
    assert json.loads(secrets.read_text()) == stored
    for value in stored.values():
        assert value not in out


def test_prod_is_protected_and_destroy_needs_the_flag(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = ["--spec", str(SPEC), "--env", "prod"]
    assert main(["apply", *prod]) == 0
    db = client("rds").describe_db_instances(DBInstanceIdentifier="jobtory-prod-db")["DBInstances"][
        0
    ]
    assert db["DeletionProtection"] is True
    assert db["BackupRetentionPeriod"] == 14
    assert db["MultiAZ"] is True
    elbv2 = client("elbv2")
    alb = elbv2.describe_load_balancers(Names=["jobtory-prod-alb"])["LoadBalancers"][0]
    attrs = elbv2.describe_load_balancer_attributes(LoadBalancerArn=alb["LoadBalancerArn"])
    assert {"Key": "deletion_protection.enabled", "Value": "true"} in attrs["Attributes"]
    capsys.readouterr()
    assert main(["destroy", *prod]) == 1
    assert "--yes --confirm-env prod" in capsys.readouterr().err
    # confirmed, but destroy never turns deletion protection off by itself
    assert main(["destroy", *prod, "--yes", "--confirm-env", "prod"]) == 1
    err = capsys.readouterr().err
    assert "db_instance jobtory-prod-db has deletion protection" in err
    assert "load_balancer jobtory-prod-alb has deletion protection" in err
    assert "--remove-deletion-protection" in err
    assert client("rds").describe_db_instances()["DBInstances"]  # untouched
    yes = ["--yes", "--confirm-env", "prod", "--remove-deletion-protection"]
    assert main(["destroy", *prod, *yes]) == 0
    assert client("rds").describe_db_instances()["DBInstances"] == []
    assert elbv2.describe_load_balancers()["LoadBalancers"] == []


def test_admin_cidr_opens_ssh_to_that_block_only(aws_env: str, run: Run, tmp_path: Path) -> None:
    spec = tmp_path / "stack.toml"
    spec.write_text(
        SPEC.read_text().replace('# admin_cidr = "203.0.113.7/32"', 'admin_cidr = "203.0.113.7/32"')
    )
    code, out, err = run("plan", spec=spec)
    assert code == 0, err
    assert "    ingress: tcp/22 from 203.0.113.7/32" in out
    code, _, err = run("apply", spec=spec)
    assert code == 0, err
    assert ingress(groups()["ec2"]) == {(80, groups()["alb"]["GroupId"]), (22, "203.0.113.7/32")}


def test_release_flag_and_a_release_kept_across_applies(applied: str, run: Run) -> None:
    code, _, err = run("apply", "--release", "v7")  # not published
    assert code == 1 and "release v7 is not in the release store" in err
    sha256 = stub_release("v7", ENV)
    code, _, err = run("apply", "--release", "v7")
    assert code == 0, err
    ec2 = client("ec2")

    def script() -> str:
        data = ec2.describe_launch_template_versions(
            LaunchTemplateName=f"jobtory-{ENV}-lt", Versions=["$Default"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        return base64.b64decode(data["UserData"]).decode()

    assert "\nVERSION=v7\n" in script() and f"\nMANIFEST_SHA256={sha256}\n" in script()
    code, out, _ = run("plan")  # no --release: the template's release is kept
    assert out.strip().endswith("No changes.")
    code, _, err = run("plan", "--release", "bad version!")
    assert code == 1 and "version 'bad version!'" in err
    code, _, err = run("plan", "--release", "v7", "--artifact-url", "https://a.example/r")
    assert code == 1 and "instances fetch their release from the release store" in err


# ---- destroy: protection is a property, and destroy asks ---------------------------------


class Terminal(io.StringIO):
    """stdin as a terminal, holding what the user types."""

    def isatty(self) -> bool:
        return True


def production_spec(tmp_path: Path) -> Path:
    """The shipped spec with prod renamed: `production` (still `protected = true`)."""
    spec = tmp_path / "stack.toml"
    text = SPEC.read_text().replace("[environments.prod]", "[environments.production]")
    spec.write_text(text)
    return spec


def test_a_protected_env_of_any_name_keeps_its_deletion_protection(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    mutations: list[str],
    tmp_path: Path,
) -> None:
    production = ["--spec", str(production_spec(tmp_path)), "--env", "production"]
    assert main(["apply", *production]) == 0
    db = client("rds").describe_db_instances(DBInstanceIdentifier="jobtory-production-db")
    assert db["DBInstances"][0]["DeletionProtection"] is True
    capsys.readouterr()
    mutations.clear()

    assert main(["destroy", *production, "--yes"]) == 1  # its name is needed too
    assert "pass --confirm-env production" in capsys.readouterr().err
    assert main(["destroy", *production, "--yes", "--confirm-env", "production"]) == 1
    captured = capsys.readouterr()
    assert "- delete db_instance jobtory-production-db" in captured.out  # the plan, shown
    assert "deletion protection: on (kept: destroy never turns it off by itself)" in captured.out
    assert len(captured.err.splitlines()) == 1  # one line, naming each resource and the fix
    for resource in ("load_balancer jobtory-production-alb", "db_instance jobtory-production-db"):
        assert (
            f"{resource} has deletion protection, and destroy never turns it off by itself: "
            "pass --remove-deletion-protection"
        ) in captured.err
    assert mutations == []  # refused before the first change
    db = client("rds").describe_db_instances(DBInstanceIdentifier="jobtory-production-db")
    assert db["DBInstances"][0]["DeletionProtection"] is True


def test_destroy_shows_its_plan_and_asks_on_a_terminal(
    applied: str,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
    mutations: list[str],
) -> None:
    mutations.clear()
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    code, out, err = run("destroy")
    assert code == 1
    assert "- delete db_instance jobtory-staging-db" in out
    assert "- delete vpc jobtory-staging-vpc" in out
    assert re.search(r"Plan: 0 to add, \d+ to change, \d+ to destroy\.", out)
    assert "destroy these" in err and "in staging? Only 'yes' is accepted: " in err
    assert err.rstrip().endswith(
        "error: destroy cancelled: the answer was not 'yes'; nothing changed"
    )
    assert mutations == []
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    code, out, err = run("destroy")
    assert code == 0, err
    assert out.index("Plan: ") < out.index("Destroyed")
    code, out, _ = run("destroy", "--yes")  # nothing left: nothing is asked
    assert code == 0 and out.rstrip().endswith("No changes.")


def test_protected_destroy_on_a_terminal_takes_the_typed_name(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mutations: list[str],
) -> None:
    prod = ["--spec", str(SPEC), "--env", "prod"]
    assert main(["apply", *prod]) == 0
    mutations.clear()
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))  # --yes-like answers are not names
    assert main(["destroy", *prod, "--remove-deletion-protection"]) == 1
    assert "prod is protected: type its name to destroy" in capsys.readouterr().err
    assert mutations == []
    monkeypatch.setattr("sys.stdin", Terminal("prod\n"))
    assert main(["destroy", *prod, "--remove-deletion-protection"]) == 0
    assert client("rds").describe_db_instances()["DBInstances"] == []


def test_the_old_prod_flag_still_confirms_prod(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = ["--spec", str(SPEC), "--env", "prod"]
    assert main(["apply", *prod]) == 0
    capsys.readouterr()
    assert main(["destroy", *prod, "--yes-destroy-prod", "--remove-deletion-protection"]) == 0
    assert "old alias of --yes --confirm-env prod" in capsys.readouterr().err
    assert client("rds").describe_db_instances()["DBInstances"] == []


# ---- destroy deletes what the stack made, in a safe order ---------------------------------


def calls_with_params(client_hook: Callable[[Callable[[Any], None]], None]) -> list[Any]:
    """(operation, its API parameters) of every call made through the reconciler."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client_hook(lambda c: c.meta.events.register("before-parameter-build", record))
    return calls


def test_destroy_deletes_the_database_first_and_keeps_its_backups(
    applied: str, run: Run, client_hook: Callable[[Callable[[Any], None]], None]
) -> None:
    calls = calls_with_params(client_hook)
    code, out, err = run("destroy", "--yes")
    assert code == 0, err
    names = [(op, p.get("DBInstanceIdentifier") or p.get("Name")) for op, p in calls]
    db = names.index(("DeleteDBInstance", f"jobtory-{ENV}-db"))
    password = names.index(("DeleteParameter", f"/jobtory/{ENV}/DB_PASSWORD"))
    assert db < password  # a database nobody can log in to is never left behind
    delete = calls[db][1]
    assert delete["DeleteAutomatedBackups"] is False and delete["SkipFinalSnapshot"] is False
    first = delete["FinalDBSnapshotIdentifier"]
    assert re.fullmatch(rf"jobtory-{ENV}-db-final-\d{{8}}-\d{{6}}", first)
    assert f"final snapshot: {first}" in out and "automated backups: kept" in out

    # a second destroy (of the environment built again) names its own snapshot. (moto
    # names an instance's automated snapshot by the minute and refuses to create the
    # instance again while its retained one of the same minute exists; AWS keeps
    # retained backups apart: the test removes it, as if a minute had passed.)
    rds = client("rds")
    for snap in rds.describe_db_snapshots(SnapshotType="automated")["DBSnapshots"]:
        rds.delete_db_snapshot(DBSnapshotIdentifier=snap["DBSnapshotIdentifier"])
    assert run("apply")[0] == 0
    calls.clear()
    code, _, err = run("destroy", "--yes")
    assert code == 0, err
    second = next(p for op, p in calls if op == "DeleteDBInstance")["FinalDBSnapshotIdentifier"]
    assert second != first
    kept = {s["DBSnapshotIdentifier"] for s in client("rds").describe_db_snapshots()["DBSnapshots"]}
    assert {first, second} <= kept


def zone_id_of(name: str) -> str:
    zones = client("route53").list_hosted_zones_by_name(DNSName=name)["HostedZones"]
    return str(next(z["Id"] for z in zones if z["Name"] == name)).rsplit("/", 1)[-1]


def records_of(zid: str) -> set[tuple[str, str]]:
    found = client("route53").list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]
    return {(r["Name"], r["Type"]) for r in found}


def add_records(zid: str, *records: tuple[str, str, str]) -> None:
    client("route53").change_resource_record_sets(
        HostedZoneId=zid,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": kind,
                        "TTL": 300,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
                for name, kind, value in records
            ]
        },
    )


def test_destroy_deletes_only_the_records_it_wrote_and_keeps_a_shared_zone(
    applied: str, run: Run
) -> None:
    zone = f"{ENV}.jobtory.com."
    zid = zone_id_of(zone)
    ours = records_of(zid) - {(zone, "NS"), (zone, "SOA")}
    assert (zone, "A") in ours and any(kind == "CNAME" for _, kind in ours)
    add_records(
        zid, (zone, "MX", "10 mx.example.net."), (f"_dmarc.{zone}", "TXT", '"v=DMARC1; p=none"')
    )
    code, out, err = run("destroy", "--yes")
    assert code == 0, err
    assert f"- delete route53_alias {zone} A" in out
    validation = rf"- delete route53_record _\w+\.{re.escape(zone)} CNAME\n    acm validation"
    assert re.search(validation, out)
    assert (
        f"  kept: route53_zone {zone} (it holds records this stack did not write: "
        f"MX {zone}, TXT _dmarc.{zone})"
    ) in out
    assert records_of(zid) == {(zone, "NS"), (zone, "SOA"), (zone, "MX"), (f"_dmarc.{zone}", "TXT")}


def test_adopted_resources_stay_unless_asked(
    applied: str, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iam, rds = client("iam"), client("rds")
    role = f"jobtory-{ENV}-ec2"
    # as apply leaves what it took over: tagged stack/env plus adopted=true
    iam.tag_role(RoleName=role, Tags=[{"Key": "adopted", "Value": "true"}])
    db = rds.describe_db_instances(DBInstanceIdentifier=f"jobtory-{ENV}-db")["DBInstances"][0]
    rds.add_tags_to_resource(
        ResourceName=db["DBInstanceArn"], Tags=[{"Key": "adopted", "Value": "true"}]
    )
    code, out, err = run("destroy", "--yes")
    assert code == 0, err
    adopted = "(adopted: it existed before the stack; --include-adopted deletes it"
    assert f"  kept: iam_role {role} {adopted}; its instance profile stays with it)" in out
    assert f"  kept: db_instance jobtory-{ENV}-db {adopted})" in out
    assert (
        f"  kept: ssm_parameter /jobtory/{ENV}/DB_PASSWORD (the database stays, and this is "
        "its master password)"
    ) in out
    assert f"  kept: db_subnet_group jobtory-{ENV}-db-subnets" in out
    assert iam.get_role(RoleName=role)["Role"]
    assert rds.describe_db_instances()["DBInstances"]
    ssm = client("ssm")
    assert ssm.get_parameter(Name=f"/jobtory/{ENV}/DB_PASSWORD", WithDecryption=True)

    code, out, err = run("destroy", "--yes", "--include-adopted")
    assert code == 0, err
    with pytest.raises(ClientError):
        iam.get_role(RoleName=role)
    assert rds.describe_db_instances()["DBInstances"] == []
    left = ssm.get_parameters_by_path(Path=f"/jobtory/{ENV}/", Recursive=True)["Parameters"]
    assert left == []


def untagged_role(name: str) -> None:
    client("iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )


def test_apply_marks_what_it_takes_over(aws_env: str, run: Run) -> None:
    untagged_role(f"jobtory-{ENV}-ec2")
    client("ssm").put_parameter(Name=f"/jobtory/{ENV}/GOOGLE_CLIENT_ID", Value="x", Type="String")
    code, out, err = run("plan")
    assert f"~ update iam_role jobtory-{ENV}-ec2" in out
    assert "tags: (none) -> stack, env, adopted=true (an existing resource, taken over)" in out
    assert "only with --adopt-existing" not in out  # staging is not protected
    code, _, err = run("apply")
    assert code == 0, err
    tags = client("iam").list_role_tags(RoleName=f"jobtory-{ENV}-ec2")["Tags"]
    assert {"Key": "adopted", "Value": "true"} in tags
    param_tags = client("ssm").list_tags_for_resource(
        ResourceType="Parameter", ResourceId=f"/jobtory/{ENV}/GOOGLE_CLIENT_ID"
    )["TagList"]
    assert {"Key": "adopted", "Value": "true"} in param_tags


def test_a_protected_env_takes_over_only_when_asked(
    aws_env: str, capsys: pytest.CaptureFixture[str], mutations: list[str]
) -> None:
    prod = ["--spec", str(SPEC), "--env", "prod"]
    untagged_role("jobtory-prod-ec2")
    assert main(["plan", *prod]) == 0
    assert (
        "! prod is protected: apply takes over iam_role jobtory-prod-ec2 only with --adopt-existing"
    ) in capsys.readouterr().out
    mutations.clear()
    assert main(["apply", *prod]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: prod is protected and this would take over what the stack did not create: "
        "iam_role jobtory-prod-ec2; check they belong to prod and pass --adopt-existing (they "
        "are tagged adopted=true: destroy keeps them unless --include-adopted)\n"
    )
    assert mutations == []  # refused before the first change
    assert main(["apply", *prod, "--adopt-existing"]) == 0
    tags = client("iam").list_role_tags(RoleName="jobtory-prod-ec2")["Tags"]
    assert {"Key": "adopted", "Value": "true"} in tags


def test_params_in_a_protected_env_take_over_only_when_asked(
    aws_env: str,
    capsys: pytest.CaptureFixture[str],
    mutations: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod = ["--spec", str(SPEC), "--env", "prod"]
    ssm = client("ssm")
    ssm.put_parameter(Name="/jobtory/prod/GOOGLE_CLIENT_ID", Value="hand-made", Type="String")
    ssm.put_parameter(Name="/jobtory/prod/GOOGLE_CLIENT_SECRET", Value="x" * 40, Type="String")
    mutations.clear()
    assert main(["params", "sync", *prod]) == 1
    assert "pass --adopt-existing" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-secret-value\n"))
    assert main(["params", "set", *prod, "GOOGLE_CLIENT_SECRET"]) == 1
    assert (
        "error: /jobtory/prod/GOOGLE_CLIENT_SECRET exists but this stack did not create it, and "
        "prod is protected: take it over first with `deploy.py params sync --env prod "
        "--adopt-existing`"
    ) in capsys.readouterr().err
    assert mutations == []
    assert main(["params", "sync", *prod, "--adopt-existing"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-new-secret-value\n"))
    assert main(["params", "set", *prod, "GOOGLE_CLIENT_SECRET"]) == 0


# ---- an engine upgrade takes a snapshot first -----------------------------------------------


def test_an_engine_upgrade_takes_a_snapshot_first(
    aws_env: str, run: Run, tmp_path: Path, client_hook: Callable[[Callable[[Any], None]], None]
) -> None:
    old = tmp_path / "stack.toml"
    old.write_text(SPEC.read_text().replace('engine_version = "17.6"', 'engine_version = "16.8"'))
    assert run("apply", spec=old)[0] == 0
    code, out, err = run("plan")  # the shipped spec: 17.6
    assert code == 0, err
    snapshot = re.search(
        rf"\+ create db_snapshot (jobtory-{ENV}-db-pre-upgrade-\d{{8}}-\d{{6}})", out
    )
    assert snapshot, out
    assert out.index("db_snapshot") < out.index("engine_version: 16.8 -> 17.6")
    calls = calls_with_params(client_hook)
    code, out, err = run("apply")
    assert code == 0, err
    ops = [op for op, _ in calls]
    assert ops.index("CreateDBSnapshot") < ops.index("ModifyDBInstance")
    taken = next(p for op, p in calls if op == "CreateDBSnapshot")
    assert taken["DBInstanceIdentifier"] == f"jobtory-{ENV}-db"
    snaps = client("rds").describe_db_snapshots(DBSnapshotIdentifier=taken["DBSnapshotIdentifier"])
    assert snaps["DBSnapshots"][0]["EngineVersion"] == "16.8"
    # a plan with no engine change takes none
    assert "db_snapshot" not in run("plan")[1]
