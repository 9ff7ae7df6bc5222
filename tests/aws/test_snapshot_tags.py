"""Snapshots carry the build tags from `CreateImage` on, so a run killed before the image is available
leaves snapshots `cleanup` finds, and the builder's policy needs no right to tag other snapshots.

Stubbed: the emulator (moto 5.2.5) answers a `snapshot` TagSpecification with HTTP 500, so what
production sends is checked with botocore's Stubber, which validates it against the real EC2 model.
The emulator-based tests run with `tag_snapshots_at_creation` (condor_seed.emulator.aws), which takes
the spec out server-side and applies it as AWS does."""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import botocore.stub

from condor_seed.aws import images
from condor_seed.aws.tags import tag_list

POLICY = Path(__file__).resolve().parents[2] / "iam" / "builder-policy.json"
TAGS = {"condor-seed:build-id": "b-1", "condor-seed:recipe": "rhel9-x86_64", "Name": "seed"}


def test_create_image_tags_image_and_snapshots_in_one_call():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with botocore.stub.Stubber(ec2) as stub:
        stub.add_response("create_image", {"ImageId": "ami-0123456789abcdef0"}, {
            "InstanceId": "i-0123456789abcdef0", "Name": "seed", "Description": "a seed",
            "TagSpecifications": [{"ResourceType": "image", "Tags": tag_list(TAGS)},
                                  {"ResourceType": "snapshot", "Tags": tag_list(TAGS)}]})
        assert images.create_image(ec2, "i-0123456789abcdef0", "seed", "a seed", TAGS) == "ami-0123456789abcdef0"
        stub.assert_no_pending_responses()


def test_the_builder_tags_snapshots_only_at_creation_or_its_own():
    """No statement lets CreateTags reach a snapshot unless it is created by one of our calls or
    already carries the build tag."""
    for statement in json.loads(POLICY.read_text())["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "ec2:CreateTags" not in actions or not any("snapshot" in r or r == "*" for r in resources):
            continue
        condition = statement.get("Condition", {})
        assert ("ec2:CreateAction" in condition.get("StringEquals", {})
                or "aws:ResourceTag/condor-seed:build-id" in condition.get("StringLike", {})), statement["Sid"]


def test_the_emulated_build_tags_snapshots_at_creation(emu):
    """Against the emulator: the snapshot is tagged by CreateImage itself, never by a later CreateTags."""
    instance = emu.ec2.run_instances(ImageId=emu.ec2.register_image(
        Name="base", RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"],
        MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image_id = images.create_image(emu.ec2, instance, "seed", "a seed", TAGS)
    image = emu.ec2.describe_images(ImageIds=[image_id])["Images"][0]
    snapshots = emu.ec2.describe_snapshots(SnapshotIds=images.snapshot_ids(image))["Snapshots"]
    assert snapshots and all({t["Key"]: t["Value"] for t in s["Tags"]} == TAGS for s in snapshots)
