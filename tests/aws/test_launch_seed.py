"""`invoke launch-seed` against the emulator: the newest published seed starts with its instance role,
security group and IMDS settings; a failure or an interrupt part-way leaves nothing; --terminate
removes everything and is idempotent; bad network flags fail before any AWS call.

Failures are injected with botocore event hooks on the client the code under test uses (the instance
dies at start; Ctrl-C right after the security group; IAM's eventual consistency refusing the new
profile once): the requests and answers are otherwise the emulator's own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import botocore.exceptions
import pytest

from condor_seed.aws import seed_role
from condor_seed.aws.launch_seed import (IMDS_FOR_CONDOR_ANNEX, LaunchFailed, LaunchOptions, SeedLaunch,
                                         access_options, terminate_seeds)
from condor_seed.aws.session import Aws
from condor_seed.aws.tags import EXPIRES_TAG, tag_dict
from condor_seed.errors import PreflightError
from condor_seed.paths import PROJECT_DIR
from condor_seed.recipe import load_recipe

REGION = "us-east-1"
MY_NETWORK = "203.0.113.7/32"


class Seeds:
    """The emulator with a published seed (image + SSM parameter) and a key pair; `state()` lists what exists."""

    def __init__(self):
        self.session = boto3.Session(region_name=REGION)
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        self.recipe = load_recipe("rhel9-x86_64")
        self.image_id = self.ec2.register_image(Name="condor-seed-rhel9-published", RootDeviceName="/dev/sda1")["ImageId"]
        boto3.client("ssm", region_name=REGION).put_parameter(Name=self.recipe.ssm_parameter(), Value=self.image_id,
                                                              Type="String")
        self.ec2.create_key_pair(KeyName="mykey")
        self.reports: list[str] = []

    def launch(self, **access) -> SeedLaunch:
        access = access_options(**{"ssh_cidr": MY_NETWORK, "key_name": "mykey", "collector_cidr": None, **access})
        options = LaunchOptions(region=REGION, poll_interval=0.01, timeout=10, **access)
        return SeedLaunch(Aws(session=self.session), self.recipe, options, self.reports.append)

    def on(self, event: str, handler) -> None:
        self.session.events.register(event, handler)

    def state(self) -> dict[str, list]:
        live = [i for r in self.ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"]
        groups = [g for g in self.ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
        roles = self.iam.list_roles(PathPrefix=seed_role.PATH)["Roles"]
        profiles = self.iam.list_instance_profiles(PathPrefix=seed_role.PATH)["InstanceProfiles"]
        return {k: v for k, v in {"instances": live, "groups": groups, "roles": roles, "profiles": profiles}.items() if v}


@pytest.fixture
def seeds(aws_env):
    return Seeds()


def test_launch_starts_the_published_seed_with_role_group_and_imds(seeds):
    result = seeds.launch().start()
    state = seeds.state()
    (instance,) = state["instances"]
    assert instance["InstanceId"] == result.instance_id and instance["ImageId"] == seeds.image_id
    assert instance["State"]["Name"] == "running" and instance["KeyName"] == "mykey"
    options = instance["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("optional", 1) == (
        IMDS_FOR_CONDOR_ANNEX["HttpTokens"], IMDS_FOR_CONDOR_ANNEX["HttpPutResponseHopLimit"])
    (profile,) = state["profiles"]
    assert instance["IamInstanceProfile"]["Arn"] == profile["Arn"]
    assert [r["RoleName"] for r in profile["Roles"]] == [result.instance_profile]
    inline = seeds.iam.get_role_policy(RoleName=result.instance_profile, PolicyName=seed_role.POLICY_NAME)
    document = inline["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    assert document == json.loads((PROJECT_DIR / "iam" / "seed-instance-policy.json").read_text())
    (group,) = state["groups"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
    opened = sorted((p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p["IpRanges"])
    assert opened == [(22, MY_NETWORK), (9618, "0.0.0.0/0")]
    # A finished launch is no leftover for the janitor; everything carries the launch id.
    assert EXPIRES_TAG not in tag_dict(instance.get("Tags")) and EXPIRES_TAG not in tag_dict(group.get("Tags"))
    assert tag_dict(instance["Tags"])["condor-seed:build-id"] == result.launch_id
    lines = result.how_to_use()
    assert f"ssh -i mykey.pem ec2-user@{instance['PublicDnsName']}" in lines[0]
    assert any("condor_annex -setup" in line for line in lines)


def test_without_setup_permissions_the_role_cannot_create_roles(seeds):
    launch = seeds.launch()
    launch.options.setup_permissions = False
    result = launch.start()
    document = seeds.iam.get_role_policy(RoleName=result.instance_profile, PolicyName=seed_role.POLICY_NAME)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    sids = [s["Sid"] for s in document["Statement"]]
    assert "AnnexCreateAndStatus" in sids and not [sid for sid in sids if sid.startswith("Setup")]
    assert not [a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                if a in ("iam:CreateRole", "iam:PutRolePolicy", "cloudformation:CreateStack")]


def test_without_ssh_cidr_only_htcondor_is_open(seeds):
    result = seeds.launch(ssh_cidr=None, key_name=None).start()
    (group,) = seeds.state()["groups"]
    assert [p["FromPort"] for p in group["IpPermissions"]] == [9618]
    assert "no SSH" in result.how_to_use()[0]


def test_instance_dying_at_start_leaves_nothing(seeds):
    def kill_it(parsed, **kwargs):
        seeds.ec2.terminate_instances(InstanceIds=[parsed["Instances"][0]["InstanceId"]])

    seeds.on("after-call.ec2.RunInstances", kill_it)
    with pytest.raises(LaunchFailed, match="is (shutting-down|terminated)"):
        seeds.launch().start()
    assert seeds.state() == {}
    assert any("undoing what this run created" in line for line in seeds.reports)


def test_refused_launch_is_one_line_and_leaves_nothing(seeds):
    def refuse(**kwargs):  # e.g. an account policy that only allows HttpTokens=required
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform this operation."}},
            "RunInstances")

    seeds.on("before-call.ec2.RunInstances", refuse)
    with pytest.raises(LaunchFailed, match="AWS refused RunInstances: UnauthorizedOperation"):
        seeds.launch().start()
    assert seeds.state() == {}


def test_ctrl_c_after_the_security_group_leaves_nothing(seeds):
    def interrupt(**kwargs):
        raise KeyboardInterrupt

    seeds.on("after-call.ec2.AuthorizeSecurityGroupIngress", interrupt)
    with pytest.raises(KeyboardInterrupt):
        seeds.launch().start()
    assert seeds.state() == {}


def test_launch_waits_for_the_new_instance_profile(seeds):
    refusals = []

    def not_yet(**kwargs):  # what EC2 answers for a few seconds after the profile was created
        if not refusals:
            refusals.append(1)
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "InvalidParameterValue", "Message": "Value (x) for parameter iamInstanceProfile.name "
                                                                       "is invalid. Invalid IAM Instance Profile name"}},
                "RunInstances")

    seeds.on("before-call.ec2.RunInstances", not_yet)
    result = seeds.launch().start()
    assert refusals and result.instance_id
    assert len(seeds.state()["instances"]) == 1


def test_no_published_seed_fails_before_creating_anything(seeds):
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=seeds.recipe.ssm_parameter())
    with pytest.raises(PreflightError, match="no published rhel9-x86_64 seed"):
        seeds.launch().start()
    assert seeds.state() == {}


def test_unknown_key_pair_fails_before_creating_anything(seeds):
    with pytest.raises(PreflightError, match="no such key pair"):
        seeds.launch(key_name="nokey").start()
    assert seeds.state() == {}


def test_terminate_removes_everything_and_is_idempotent(seeds):
    first, second = seeds.launch().start(), seeds.launch(ssh_cidr=None, key_name=None).start()
    # and what a SIGKILLed launch leaves behind: a role and profile without instance
    orphan = "seed-20260101T000000Z-0000dead"
    tags = {"condor-seed:build-id": orphan, seed_role.REGION_TAG: REGION}
    seed_role.create_role(seeds.iam, seed_role.name_for(orphan), tags)
    seed_role.create_instance_profile(seeds.iam, seed_role.name_for(orphan), tags)
    aws = Aws(session=seeds.session)
    removed = terminate_seeds(aws, REGION, launch_id=first.launch_id, report=seeds.reports.append)
    assert removed == [first.launch_id]
    assert [i["InstanceId"] for i in seeds.state()["instances"]] == [second.instance_id]
    assert sorted(terminate_seeds(aws, REGION, report=seeds.reports.append)) == sorted([second.launch_id, orphan])
    assert seeds.state() == {}
    assert terminate_seeds(aws, REGION, report=seeds.reports.append) == []


def test_terminate_leaves_other_regions_alone(seeds):
    seeds.launch().start()
    assert terminate_seeds(Aws(session=seeds.session), "us-west-2", report=seeds.reports.append) == []
    assert len(seeds.state()["instances"]) == 1


# ------------------------------------------------------------------ the command line
def invoke(*args):
    return subprocess.run([sys.executable, "-m", "invoke", "launch-seed", *args], cwd=PROJECT_DIR, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("flags, message", [
    (["--ssh-cidr", "10.0.0.1/8", "--key-name", "mykey"], "not a CIDR network"),
    (["--ssh-cidr", "203.0.113.7", "--key-name", "mykey"], "with its prefix length"),
    (["--ssh-cidr", "nonsense/99", "--key-name", "mykey"], "not a CIDR network"),
    (["--ssh-cidr", MY_NETWORK], "--ssh-cidr needs --key-name"),
    (["--key-name", "mykey"], "port 22 would stay closed"),
    (["--collector-cidr", "0.0.0.0"], "--collector-cidr"),
])
def test_bad_network_flags_fail_before_any_aws_call(flags, message, aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call would fail differently
    proc = invoke("--region", REGION, *flags)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 3 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_cli_launch_then_terminate(seeds):
    proc = invoke("--region", REGION, "--ssh-cidr", "0.0.0.0/0", "--key-name", "mykey", "--poll-interval", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: SSH is open to the whole internet" in proc.stderr
    launch_id, where, address = proc.stdout.splitlines()[0].split("\t")
    assert where.startswith(f"{REGION}:i-") and address
    assert "condor_annex -setup" in proc.stdout and f"ec2-user@{address}" in proc.stdout
    proc = invoke("--region", REGION, "--terminate")
    assert proc.returncode == 0 and proc.stdout.strip() == f"removed\t{launch_id}", proc.stderr
    assert seeds.state() == {}
