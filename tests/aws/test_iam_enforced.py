"""The pipeline against the emulator with IAM enforcement ON, as a user holding only
iam/builder-policy.json (in the form moto can enforce: `iam_policy.emulator_view`, which says
precisely what moto does not evaluate), and parliament's lint of the shipped policy."""
from __future__ import annotations

import datetime as dt
import json

import boto3
import botocore.exceptions
import pytest
import requests

from condor_seed.emulator.aws import EmulatorGaps, Recorder
from condor_seed.aws import tags as T
from condor_seed.aws.build import build_recipe
from condor_seed.aws.cleanup import cleanup
from condor_seed.aws.session import Aws
from condor_seed.aws.smoke import record_result, smoke_test
from condor_seed.recipe import load_recipe
from iam_policy import POLICY_PATH, emulator_view, load_policy


def _user(iam, name: str, policy: dict) -> dict:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


@pytest.fixture
def enforced(emu):
    """IAM on: the code under test runs as `condor-seed-builder`; the test's own clients and the
    guest simulator as an admin user. Returns a function making the builder's Aws for a policy."""
    iam = boto3.client("iam")
    admin = boto3.Session(region_name="us-east-1", **_user(iam, "test-admin", {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    emu.ec2 = admin.client("ec2")
    emu.guest._client = admin.client("ec2")

    def builder(policy: dict, name: str = "condor-seed-builder") -> tuple[Aws, Recorder]:
        session = boto3.Session(region_name="us-east-1", **_user(admin.client("iam"), name, policy))
        recorder = Recorder(session)
        EmulatorGaps(session)
        return Aws(session=session), recorder

    before = requests.post(f"{emu.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).json()
    try:
        yield builder
    finally:
        requests.post(f"{emu.endpoint}/moto-api/reset-auth",
                      data=str(before["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]).encode(), timeout=10)


def test_build_smoke_test_and_cleanup_run_with_only_the_shipped_policy(emu, enforced):
    aws, recorder = enforced(emulator_view())
    recipe = load_recipe("rhel9-x86_64")
    result = build_recipe(aws, recipe, emu.options(), report=lambda m: None)
    smoked = smoke_test(aws, "us-east-1", result.image_id, report=lambda m: None, poll_interval=0.02, timeout=10.0)
    record_result(aws.ec2("us-east-1"), result.image_id, "passed")
    emu.guest.mode = "fail"  # a failed build undoes itself under the same policy
    with pytest.raises(Exception):
        build_recipe(aws, recipe, emu.options(now=lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)),
                     report=lambda m: None)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    cleanup(aws, "us-east-1", older_than=dt.timedelta(hours=6), dry_run=False, report=lambda m: None, now=later)
    left = emu.leaks()  # the smoke-tested image and its snapshots, nothing of the failed or killed runs
    assert smoked.instance_id and set(left) == {"images", "snapshots"} and left["images"] == {result.image_id}
    image = emu.ec2.describe_images(ImageIds=[result.image_id])["Images"][0]
    assert T.tag_dict(image["Tags"])[T.SMOKE_TEST_TAG] == "passed"
    # no ec2:ModifyImageAttribute: a build no longer marks the image ImdsSupport=v2.0 (README, IMDS)
    assert {"ec2:RunInstances", "ec2:CreateImage", "ec2:TerminateInstances", "ec2:CreateTags",
            "ec2:DeleteTags"} <= recorder.actions()


def test_enforcement_is_on_a_policy_without_create_image_stops_the_build(emu, enforced):
    """The control: the same run as a user whose policy lacks one action is refused by the emulator."""
    policy = emulator_view()
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != "ec2:CreateImage"] or ["ec2:DescribeImages"]
    aws, _ = enforced(policy, name="builder-without-create-image")
    with pytest.raises(Exception) as err:
        build_recipe(aws, load_recipe("rhel9-x86_64"), emu.options(), report=lambda m: None)
    assert "AccessDenied" in str(err.value) or "not authorized" in str(err.value), err.value
    assert emu.leaks() == {}  # the undo ran under the same restricted user


def test_a_stranger_without_the_policy_can_do_nothing(emu, enforced):
    aws, _ = enforced({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ec2:DescribeRegions", "Resource": "*"}]}, name="stranger")
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied|not authorized"):
        aws.ec2("us-east-1").describe_images(Owners=["self"])


# Actions AWS documents as needing several resource types; the policy grants them in one statement
# per resource type (with the condition that fits that type), as AWS's own examples do. parliament
# checks each statement alone and reports the types the others cover (RESOURCE_MISMATCH).
SPLIT_ACTIONS = {"ec2:RunInstances", "ec2:CreateSecurityGroup", "ec2:CreateImage"}


def test_parliament_finds_nothing_in_the_policy():
    from parliament import analyze_policy_string

    policy = load_policy()
    findings = analyze_policy_string(POLICY_PATH.read_text(), include_community_auditors=True).findings
    other = [f for f in findings
             if f.issue != "RESOURCE_MISMATCH" or {d["action"] for d in f.detail} - SPLIT_ACTIONS]
    assert other == [], [(f.issue, f.detail) for f in other]
    # every resource type parliament asks for is covered by some statement of the split action
    for finding in findings:
        for missing in finding.detail:
            granted = [r for s in policy["Statement"] if missing["action"] in (s["Action"] if isinstance(
                s["Action"], list) else [s["Action"]]) for r in (s["Resource"] if isinstance(
                s["Resource"], list) else [s["Resource"]])]
            kind = missing["required_format"].rsplit(":", 1)[-1]
            assert any(r.rsplit(":", 1)[-1] == kind for r in granted), missing


def test_parliament_flags_the_old_policy():
    """The lint can fail: main's policy granted image and snapshot actions on `*` without condition."""
    from parliament import analyze_policy_string

    old = json.loads(POLICY_PATH.read_text())
    old["Statement"].append({"Sid": "Wide", "Effect": "Allow", "Resource": "*",
                             "Action": ["ec2:ModifySnapshotAttribute", "ec2:DeregisterImage"]})
    issues = {f.issue for f in analyze_policy_string(json.dumps(old), include_community_auditors=True).findings}
    assert {"RESOURCE_STAR", "PERMISSIONS_MANAGEMENT_ACTIONS"} <= issues
