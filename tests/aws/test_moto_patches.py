"""Each patch of replica/moto_patches against moto's own server: the gap on the unpatched
server, then the same calls on the patched one (`python -m replica.emulator`)."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from replica.moto_patches.instance_refresh import ENDPOINT

pytestmark = pytest.mark.aws

REGION = "ap-northeast-2"
ONCE = Config(retries={"mode": "standard", "max_attempts": 1})  # a 500 is not retried
DEBIAN = "/aws/service/debian/release/13/latest/amd64"


def clients(url: str) -> tuple[Any, Any, Any]:
    httpx.post(f"{url}/moto-api/reset", timeout=10)

    def make(service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=ONCE,
        )

    return make("ec2"), make("autoscaling"), make("ssm")


def template_version_2(ec2: Any) -> tuple[str, str]:
    """A launch template whose version 2 (CreateLaunchTemplateVersion, new user data) is
    the default, and a subnet: (template id, subnet id)."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    data = {"ImageId": ami, "InstanceType": "t3.small"}
    lt = ec2.create_launch_template(
        LaunchTemplateName="lt",
        LaunchTemplateData={**data, "UserData": base64.b64encode(b"#!/bin/sh\necho 1").decode()},
    )["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(
        LaunchTemplateId=lt,
        LaunchTemplateData={**data, "UserData": base64.b64encode(b"#!/bin/sh\necho 2").decode()},
    )
    ec2.modify_launch_template(LaunchTemplateId=lt, DefaultVersion="2")
    return str(lt), str(subnet)


def create_group(autoscaling: Any, lt: str, subnet: str) -> None:
    """A group that launches one instance from version 2."""
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="asg",
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "2"},
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
    )


def group_on_version_2(ec2: Any, autoscaling: Any) -> str:
    lt, subnet = template_version_2(ec2)
    create_group(autoscaling, lt, subnet)
    return lt


# ---- launch_template_user_data ----------------------------------------------------------------


def test_unpatched_moto_cannot_launch_from_a_new_template_version(
    unpatched_moto_endpoint: str,
) -> None:
    ec2, autoscaling, _ = clients(unpatched_moto_endpoint)
    lt, subnet = template_version_2(ec2)
    with pytest.raises(ResponseParserError, match="500 Internal Server Error"):
        create_group(autoscaling, lt, subnet)  # moto asserts on the stored user data


def test_patched_moto_launches_from_a_new_template_version(moto_endpoint: str) -> None:
    ec2, autoscaling, _ = clients(moto_endpoint)
    lt = group_on_version_2(ec2, autoscaling)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["asg"])[
        "AutoScalingGroups"
    ][0]
    assert len(group["Instances"]) == 1
    version = ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["2"])
    user_data = version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]
    assert base64.b64decode(user_data) == b"#!/bin/sh\necho 2"
    with pytest.raises(ClientError) as refused:  # not base64: refused, as AWS does
        ec2.create_launch_template_version(
            LaunchTemplateId=lt, LaunchTemplateData={"UserData": "not base64!"}
        )
    assert "user data" in str(refused.value).lower()


# ---- instance_refresh -------------------------------------------------------------------------

PREFERENCES = {
    "MinHealthyPercentage": 100,
    "MaxHealthyPercentage": 200,
    "CheckpointPercentages": [50, 100],
    "CheckpointDelay": 60,
    "AutoRollback": True,
    "SkipMatching": True,
}


def test_unpatched_moto_has_no_instance_refresh(unpatched_moto_endpoint: str) -> None:
    ec2, autoscaling, _ = clients(unpatched_moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(LaunchTemplateName="lt", LaunchTemplateData={"ImageId": ami})[
        "LaunchTemplate"
    ]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="asg",
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        VPCZoneIdentifier=subnet,
    )
    with pytest.raises(ResponseParserError, match="500 Internal Server Error"):
        autoscaling.start_instance_refresh(AutoScalingGroupName="asg")


def set_status(url: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{url}{ENDPOINT}", json={"AutoScalingGroupName": "asg", "region": REGION, **body}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_patched_moto_stores_follows_and_completes_a_refresh(moto_endpoint: str) -> None:
    ec2, autoscaling, _ = clients(moto_endpoint)
    lt = group_on_version_2(ec2, autoscaling)
    ec2.create_launch_template_version(
        LaunchTemplateId=lt, LaunchTemplateData={"ImageId": "ami-12c6146b"}, SourceVersion="2"
    )
    desired = {"LaunchTemplate": {"LaunchTemplateId": lt, "Version": "3"}}
    refresh_id = autoscaling.start_instance_refresh(
        AutoScalingGroupName="asg",
        Strategy="Rolling",
        Preferences=PREFERENCES,
        DesiredConfiguration=desired,
    )["InstanceRefreshId"]
    [found] = autoscaling.describe_instance_refreshes(AutoScalingGroupName="asg")[
        "InstanceRefreshes"
    ]
    assert found["InstanceRefreshId"] == refresh_id
    assert found["Status"] == "Pending"
    assert found["Preferences"] == PREFERENCES
    assert found["DesiredConfiguration"]["LaunchTemplate"]["Version"] == "3"
    assert found["InstancesToUpdate"] == 1

    with pytest.raises(ClientError) as busy:  # one at a time, as on AWS
        autoscaling.start_instance_refresh(AutoScalingGroupName="asg")
    assert busy.value.response["Error"]["Code"] == "InstanceRefreshInProgress"

    set_status(moto_endpoint, Status="InProgress", PercentageComplete=50, InstancesToUpdate=1)
    now = autoscaling.describe_instance_refreshes(
        AutoScalingGroupName="asg", InstanceRefreshIds=[refresh_id]
    )["InstanceRefreshes"][0]
    assert (now["Status"], now["PercentageComplete"]) == ("InProgress", 50)

    set_status(moto_endpoint, Status="Successful", InstanceRefreshId=refresh_id)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["asg"])[
        "AutoScalingGroups"
    ][0]
    assert group["LaunchTemplate"]["Version"] == "3"  # the desired configuration, at success
    done = autoscaling.describe_instance_refreshes(AutoScalingGroupName="asg")["InstanceRefreshes"][
        0
    ]
    assert (done["Status"], done["PercentageComplete"]) == ("Successful", 100)
    assert "EndTime" in done

    with pytest.raises(ClientError) as none:
        autoscaling.cancel_instance_refresh(AutoScalingGroupName="asg")
    assert none.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"


def test_patched_moto_refuses_what_aws_refuses(moto_endpoint: str) -> None:
    ec2, autoscaling, _ = clients(moto_endpoint)
    group_on_version_2(ec2, autoscaling)
    for preferences in (
        {"MaxHealthyPercentage": 200},  # needs MinHealthyPercentage
        {"MinHealthyPercentage": 50, "MaxHealthyPercentage": 200},  # more than 100 apart
        {"CheckpointDelay": 60},  # needs CheckpointPercentages
        {"AutoRollback": True},  # needs a desired configuration
    ):
        with pytest.raises(ClientError) as refused:
            autoscaling.start_instance_refresh(AutoScalingGroupName="asg", Preferences=preferences)
        assert refused.value.response["Error"]["Code"] == "ValidationError", preferences
    autoscaling.start_instance_refresh(AutoScalingGroupName="asg")
    rolled = autoscaling.cancel_instance_refresh(AutoScalingGroupName="asg")
    last = autoscaling.describe_instance_refreshes(AutoScalingGroupName="asg")["InstanceRefreshes"]
    assert (last[0]["InstanceRefreshId"], last[0]["Status"]) == (
        rolled["InstanceRefreshId"],
        "Cancelled",
    )


# ---- debian_ami_parameters --------------------------------------------------------------------


def test_unpatched_moto_lacks_the_debian_ami_parameter(unpatched_moto_endpoint: str) -> None:
    _, _, ssm = clients(unpatched_moto_endpoint)
    with pytest.raises(ClientError) as missing:
        ssm.get_parameter(Name=DEBIAN)
    assert missing.value.response["Error"]["Code"] == "ParameterNotFound"


def test_patched_moto_has_the_debian_ami_parameter(moto_endpoint: str) -> None:
    ec2, _, ssm = clients(moto_endpoint)
    ami = ssm.get_parameter(Name=DEBIAN)["Parameter"]["Value"]
    assert ami.startswith("ami-")
    assert ec2.describe_images(ImageIds=[ami])["Images"]  # an AMI moto's EC2 knows
