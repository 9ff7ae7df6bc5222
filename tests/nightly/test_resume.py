"""`invoke nightly` resumes a publish that stopped part-way: the image an earlier nightly built and
smoke-tested (tagged `condor-seed:smoke-test=passed`) is published from its tags, with no instance
launched and no duplicate copy; an image without that tag is not trusted and the recipe is rebuilt."""
from __future__ import annotations

import datetime as dt

import pytest

from condor_seed import manifest
from condor_seed.aws.catalog import SOURCE_AMI_TAG, recipe_images
from condor_seed.aws.tags import BUILD_ID_TAG, EXPIRES_TAG, FINGERPRINT_TAG, RECIPE_TAG, SMOKE_TEST_TAG
from condor_seed.nightly import BUILT, RESUMED, UP_TO_DATE, build_from_image, is_resumable
from condor_seed.recipe import load_recipe

from publish_helpers import REGIONS

RECIPE = "rhel9-x86_64"
NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.timezone.utc)


def publish_fails_in_us_east_2(night):
    """A nightly whose last publish step fails in us-east-2 (that region's copy is undone)."""
    night.emulated.fail("us-east-2", "ModifyImageAttribute", lambda p: "LaunchPermission" in p,
                        code="OperationNotPermitted")
    run = night.run()[RECIPE]
    night.emulated.failures.clear()
    assert not run.ok and "failed in us-east-2" in run.action, run.action
    [built] = recipe_images(night.setup.ec2("us-east-1"), RECIPE)
    assert night.tags("us-east-1", built["ImageId"])[SMOKE_TEST_TAG] == "passed"
    assert recipe_images(night.setup.ec2("us-east-2"), RECIPE) == []
    return built["ImageId"]


def test_a_nightly_whose_publish_failed_part_way_is_resumed_not_rebuilt(night, tmp_path):
    source = publish_fails_in_us_east_2(night)
    (night.tmp_path / "manifests").rename(tmp_path / "earlier-ci-run")  # the manifest does not outlive CI

    resumed = night.run()[RECIPE]
    assert resumed.ok and resumed.action == RESUMED, resumed.action
    assert night.count("RunInstances") == 0 and night.count("CreateImage") == 0
    assert [c.region for c in night.emulated.ops(operation="CopyImage")] == ["us-east-2"]  # only what was missing
    assert list(resumed.amis) == REGIONS and resumed.amis["us-east-1"] == source
    for region in REGIONS:
        [seed] = recipe_images(night.setup.ec2(region), RECIPE)  # one seed each: no duplicate copy
        assert seed["ImageId"] == resumed.amis[region] and seed["Public"] is True
        assert night.tags(region, seed["ImageId"])[SOURCE_AMI_TAG] == f"us-east-1:{source}"
    build = manifest.find_build(manifest.load(manifest.path_for(RECIPE, night.tmp_path / "manifests")))
    assert build["custom_data"]["smoke_test"] == build["custom_data"]["secret_scan"] == "passed"
    assert manifest.parse_artifact_id(build["artifact_id"]) == resumed.amis
    assert night.live_instances() == []

    assert night.run()[RECIPE].action == UP_TO_DATE


def test_an_image_without_the_smoke_test_tag_is_rebuilt(night):
    source = publish_fails_in_us_east_2(night)
    night.setup.ec2("us-east-1").delete_tags(Resources=[source], Tags=[{"Key": SMOKE_TEST_TAG}])

    rebuilt = night.run()[RECIPE]
    assert rebuilt.ok and rebuilt.action == BUILT, rebuilt.action
    assert night.count("RunInstances") == 2  # the builder and the smoke test
    assert rebuilt.amis["us-east-1"] != source


@pytest.mark.parametrize("change, resumable", [
    ({}, True),
    ({"Tags": {SMOKE_TEST_TAG: "failed"}}, False),
    ({"Tags": {SMOKE_TEST_TAG: None}}, False),
    ({"Tags": {EXPIRES_TAG: "2026-11-27T04:00:00Z"}}, False),  # an unfinished build
    ({"Tags": {FINGERPRINT_TAG: "sha256:other"}}, False),
    ({"Tags": {SOURCE_AMI_TAG: "us-west-2:ami-0"}}, False),  # a copy of another image
    ({"Tags": {SOURCE_AMI_TAG: "us-east-1:ami-1"}}, True),  # published here already, other regions missing
    ({"State": "pending"}, False),
    ({"DeprecationTime": "2026-11-27T02:59:00.000Z"}, False),
    ({"BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-1", "Encrypted": True}}]},
     False),
])
def test_what_can_be_resumed(change, resumable):
    tags = {FINGERPRINT_TAG: "sha256:x", RECIPE_TAG: RECIPE, BUILD_ID_TAG: "20261126T030000Z-abcd1234",
            SMOKE_TEST_TAG: "passed"}
    tags = {k: v for k, v in (tags | change.pop("Tags", {})).items() if v is not None}
    image = {"ImageId": "ami-1", "State": "available", "Name": "htcondor-seed-x", "CreationDate": "2026-11-26T03:20:00.000Z",
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]} | change
    assert is_resumable(image, load_recipe(RECIPE), "sha256:x", "us-east-1", NOW) is resumable
    if resumable:
        build = build_from_image("us-east-1", image)
        assert build["artifact_id"] == "us-east-1:ami-1" and build["packer_run_uuid"] == tags[BUILD_ID_TAG]
        assert build["custom_data"]["smoke_test"] == build["custom_data"]["secret_scan"] == "passed"
