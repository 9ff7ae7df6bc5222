"""`publish-ami` against the emulator. Calls the emulator lacks are answered by the `emulated` hook
(see conftest): image block public access get/disable and EnableImageDeprecation are mocked because
the emulator lacks them; Description (and the absence of ImdsSupport) are asserted on the request, because the
emulator accepts and silently drops them."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from condor_seed import manifest
from condor_seed.aws.catalog import SOURCE_AMI_TAG
from condor_seed.aws.publish import PublishError, client_token, publish_ami
from condor_seed.aws.tags import BUILD_ID_TAG, RECIPE_TAG, tag_dict
from condor_seed.recipe import load_recipe

from publish_helpers import PARAMETER, REGIONS, SlowCopies, is_mutating, make_seed, write_manifest

FAST = {"poll_interval": 0.01}


@pytest.fixture
def seed(emulated, tmp_path):
    image_id = make_seed(emulated.setup)
    return image_id, write_manifest(tmp_path, image_id, build_time=int(time.time()))


def images(emulated, region: str) -> list[dict]:
    return emulated.setup.ec2(region).describe_images(Owners=["self"])["Images"]


def only_image(emulated, region: str) -> dict:
    found = images(emulated, region)
    assert len(found) == 1, f"{region}: expected one image, found {[i['ImageId'] for i in found]}"
    return found[0]


def modify_calls(emulated, region: str, image_id: str, key: str):
    return [c for c in emulated.ops(region, "ModifyImageAttribute") if c.params["ImageId"] == image_id and key in c.params]


def test_publishes_everywhere_with_tags_imds_deprecation_and_parameter(emulated, seed):
    """mocked: the emulator lacks image block public access and EnableImageDeprecation."""
    source, path = seed
    outcomes = publish_ami(emulated.aws, manifest=path, **FAST)

    assert [o.region for o in outcomes if o.ok] == REGIONS
    recipe = load_recipe("rhel9-x86_64")
    build = manifest.find_build(manifest.load(path))
    published = manifest.parse_artifact_id(build["artifact_id"])
    assert list(published) == REGIONS and published["us-east-1"] == source
    deprecate_at = (dt.datetime.fromtimestamp(build["build_time"], dt.timezone.utc) + dt.timedelta(days=90)
                    ).replace(second=0, microsecond=0)

    for region in REGIONS:
        ec2, image = emulated.setup.ec2(region), only_image(emulated, region)
        image_id = image["ImageId"]
        assert image_id == published[region]
        assert image["Public"] is True
        tags = tag_dict(image["Tags"])
        assert tags[RECIPE_TAG] == "rhel9-x86_64" and tags[BUILD_ID_TAG] == "build-1"
        assert tags[SOURCE_AMI_TAG] == f"us-east-1:{source}" and tags["Project"] == "condor-seed"
        snaps = ec2.describe_snapshots(SnapshotIds=[b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"]])
        assert all(tag_dict(s["Tags"])[BUILD_ID_TAG] == "build-1" for s in snaps["Snapshots"])

        # never ImdsSupport=v2.0 (condor_annex's GAHP needs token-less metadata); the emulator drops a
        # changed Description: the requests are what AWS acts on
        assert modify_calls(emulated, region, image_id, "ImdsSupport") == []
        described = [image.get("Description")] + [c.params["Description"]["Value"] for c in
                                                  modify_calls(emulated, region, image_id, "Description")]
        assert described[-1] == recipe.ami_description()
        assert emulated.deprecations[(region, image_id)] == deprecate_at

        parameter = emulated.setup.ssm(region).get_parameter(Name=PARAMETER)["Parameter"]
        assert (parameter["Value"], parameter["DataType"]) == (image_id, "aws:ec2:image")

        # launch permission last, after every other change to the image
        changes = [c for c in emulated.ops(region) if is_mutating(c) and c.operation != "PutParameter"]
        assert changes[-1].operation == "ModifyImageAttribute" and "LaunchPermission" in changes[-1].params

    copies = emulated.ops(operation="CopyImage")
    assert sorted(c.region for c in copies) == ["us-east-2", "us-west-2"]
    for call in copies:
        assert call.params["ClientToken"] == client_token(f"us-east-1:{source}", call.region, 0)
        assert {t["ResourceType"] for t in call.params["TagSpecifications"]} == {"image", "snapshot"}


def test_rerun_after_success_changes_nothing_twice(emulated, seed):
    _, path = seed
    publish_ami(emulated.aws, manifest=path, **FAST)
    emulated.forget()
    publish_ami(emulated.aws, manifest=path, **FAST)
    done = {c.operation for c in emulated.mutating()}
    assert not done & {"CopyImage", "PutParameter", "DeregisterImage"}
    assert not [c for c in emulated.ops(operation="ModifyImageAttribute") if "LaunchPermission" in c.params]
    assert all(len(images(emulated, r)) == 1 for r in REGIONS)


def test_block_public_access_on_refuses_with_the_fix(emulated, seed):
    """mocked: the emulator lacks GetImageBlockPublicAccessState."""
    _, path = seed
    emulated.bpa["us-east-2"] = "block-new-sharing"
    with pytest.raises(PublishError) as err:
        publish_ami(emulated.aws, manifest=path, **FAST)
    message = str(err.value)
    assert "us-east-2" in message and "us-west-2" not in message.split(";")[0]
    assert "aws ec2 disable-image-block-public-access --region us-east-2" in message
    assert "EC2 > Dashboard > Account attributes > Data protection and security > Block public access for AMIs" in message
    assert emulated.mutating() == []


def test_block_public_access_locked_by_organization_policy(emulated, seed):
    """mocked: the emulator lacks image block public access."""
    _, path = seed
    emulated.bpa["us-west-2"] = "block-new-sharing"
    emulated.bpa_managed_by["us-west-2"] = "declarative-policy"
    with pytest.raises(PublishError, match="declarative policy"):
        publish_ami(emulated.aws, manifest=path, disable_block_public_access=True, **FAST)
    assert emulated.mutating() == []


def test_disable_block_public_access_waits_until_unblocked(emulated, seed):
    """mocked: the emulator lacks image block public access; the state flips after a few reads."""
    _, path = seed
    emulated.bpa["us-west-2"] = "block-new-sharing"
    emulated.polls_until_unblocked = 3
    publish_ami(emulated.aws, manifest=path, disable_block_public_access=True, **FAST)
    assert [c.region for c in emulated.ops(operation="DisableImageBlockPublicAccess")] == ["us-west-2"]
    reads = emulated.ops("us-west-2", "GetImageBlockPublicAccessState")
    assert len(reads) >= 4  # the check, then polls until it reads unblocked
    assert only_image(emulated, "us-west-2")["Public"] is True


def test_disable_block_public_access_gives_up_in_bounded_time(emulated, seed):
    """mocked: the emulator lacks image block public access; here it never reads unblocked."""
    _, path = seed
    emulated.bpa["us-east-2"] = "block-new-sharing"
    emulated.polls_until_unblocked = 10**9
    with pytest.raises(PublishError, match="still reads blocked in us-east-2"):
        publish_ami(emulated.aws, manifest=path, disable_block_public_access=True, bpa_timeout=0.05, **FAST)
    assert not emulated.ops(operation="CopyImage")


@pytest.mark.parametrize("record, expected", [
    ({"secret_scan": "failed"}, "secret scan is 'failed'"),
    ({"smoke_test": "not-run"}, "smoke test is 'not-run'"),
    ({"encrypted": "true"}, "encrypted"),
])
def test_gate_refuses(emulated, tmp_path, record, expected):
    image_id = make_seed(emulated.setup)
    path = write_manifest(tmp_path, image_id, **record)
    with pytest.raises(PublishError, match=expected):
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert emulated.mutating() == []


def test_forged_manifest_is_refused_by_the_image_tags(emulated, tmp_path):
    """Editing `"smoke_test": "failed"` to `"passed"` in the manifest does not publish: the image says otherwise."""
    image_id = make_seed(emulated.setup, smoke_test="failed")
    path = write_manifest(tmp_path, image_id)  # says passed
    with pytest.raises(PublishError) as err:
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert "condor-seed:smoke-test tag is 'failed'" in str(err.value) and "\n" not in str(err.value)
    assert emulated.mutating() == [] and not emulated.ops(operation="CopyImage")


def test_untagged_image_of_our_account_is_refused(emulated, tmp_path):
    ec2 = emulated.setup.ec2("us-east-1")
    image_id = ec2.register_image(Name="someone-elses-idea", RootDeviceName="/dev/sda1")["ImageId"]
    path = write_manifest(tmp_path, image_id)
    with pytest.raises(PublishError, match="lacks this project's build tags"):
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert emulated.mutating() == []


def test_manifest_naming_another_build_is_refused(emulated, tmp_path):
    image_id = make_seed(emulated.setup, build_id="build-7")
    path = write_manifest(tmp_path, image_id, build_id="build-1")
    with pytest.raises(PublishError, match="manifest's build 'build-1' is not the image's 'build-7'"):
        publish_ami(emulated.aws, manifest=path, **FAST)


def test_image_of_another_account_is_refused_and_nothing_copied(emulated, tmp_path):
    """The manifest names an image owned by 999999999999 (tagged like ours, even): nothing is copied."""
    from condor_seed.emulator.aws import add_image, backend

    image_id = add_image("us-east-1", "ami-0999999999foreign", "htcondor-seed-rhel9-x86_64-foreign", owner="999999999999")
    for key, value in ((RECIPE_TAG, "rhel9-x86_64"), (BUILD_ID_TAG, "build-1"), ("condor-seed:smoke-test", "passed")):
        backend("us-east-1").create_tags([image_id], {key: value})
    path = write_manifest(tmp_path, image_id)
    with pytest.raises(PublishError) as err:
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert "belongs to account 999999999999, not to yours (123456789012)" in str(err.value)
    assert "\n" not in str(err.value)
    assert emulated.mutating() == [] and not emulated.ops(operation="CopyImage")
    assert emulated.setup.ssm("us-east-1").describe_parameters()["Parameters"] == []


def test_ami_without_manifest_record_is_refused(emulated, tmp_path):
    image_id = make_seed(emulated.setup)
    with pytest.raises(PublishError, match="no manifest"):
        publish_ami(emulated.aws, ami=image_id, region="us-east-1", manifest_dir=tmp_path, **FAST)
    assert emulated.mutating() == []


def test_ami_with_manifest_record_publishes_to_chosen_regions(emulated, tmp_path):
    """mocked: the emulator lacks image block public access and EnableImageDeprecation."""
    image_id = make_seed(emulated.setup)
    write_manifest(tmp_path, image_id, build_time=int(time.time()))
    publish_ami(emulated.aws, ami=image_id, region="us-east-1", regions=["us-east-1", "eu-west-1"],
                manifest_dir=tmp_path, **FAST)
    assert only_image(emulated, "eu-west-1")["Public"] is True
    assert images(emulated, "us-west-2") == []


def test_regional_failure_is_undone_reported_and_rerun_finishes(emulated, seed):
    """mocked: the emulator lacks image block public access and EnableImageDeprecation; the failure
    of the last step in us-east-2 is injected."""
    source, path = seed
    emulated.fail("us-east-2", "ModifyImageAttribute", lambda p: "LaunchPermission" in p, code="OperationNotPermitted")
    with pytest.raises(PublishError) as err:
        publish_ami(emulated.aws, manifest=path, **FAST)
    message = str(err.value)
    assert "published in us-east-1, us-west-2" in message
    assert "failed in us-east-2" in message and "OperationNotPermitted" in message and "undone" in message

    failed_copy = emulated.ops("us-east-2", "CopyImage")
    assert len(failed_copy) == 1
    assert images(emulated, "us-east-2") == []
    assert emulated.setup.ec2("us-east-2").describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
    assert emulated.ops("us-east-2", "PutParameter") == []
    recorded = manifest.parse_artifact_id(manifest.find_build(manifest.load(path))["artifact_id"])
    assert list(recorded) == ["us-east-1", "us-west-2"]
    west = only_image(emulated, "us-west-2")["ImageId"]

    assert manifest.find_build(manifest.load(path))["custom_data"]["copy_attempts"] == "us-east-2=1"

    emulated.failures.clear()
    emulated.forget()
    publish_ami(emulated.aws, manifest=path, **FAST)
    [copy] = emulated.ops(operation="CopyImage")
    assert copy.region == "us-east-2"  # a fresh token: AWS would return the undone copy for the old one
    assert copy.params["ClientToken"] == client_token(f"us-east-1:{source}", "us-east-2", 1)
    assert only_image(emulated, "us-west-2")["ImageId"] == west
    assert only_image(emulated, "us-east-1")["ImageId"] == source
    east2 = only_image(emulated, "us-east-2")
    assert east2["Public"] is True
    assert emulated.setup.ssm("us-east-2").get_parameter(Name=PARAMETER)["Parameter"]["Value"] == east2["ImageId"]
    assert list(manifest.parse_artifact_id(manifest.find_build(manifest.load(path))["artifact_id"])) == [
        "us-east-1", "us-west-2", "us-east-2"]


def test_rerun_finishes_a_copy_left_half_done(emulated, seed):
    """A copy whose run died before its tags landed is found by name and finished, not copied again.
    mocked: the emulator lacks image block public access and EnableImageDeprecation."""
    source, path = seed
    ec2 = emulated.setup.ec2("us-west-2")
    leftover = ec2.copy_image(SourceImageId=source, SourceRegion="us-east-1",
                              Name=only_image(emulated, "us-east-1")["Name"])["ImageId"]
    emulated.forget()
    publish_ami(emulated.aws, manifest=path, **FAST)
    assert [c.region for c in emulated.ops(operation="CopyImage")] == ["us-east-2"]
    assert only_image(emulated, "us-west-2")["ImageId"] == leftover
    assert only_image(emulated, "us-west-2")["Public"] is True


def test_dry_run_changes_nothing(emulated, seed, capsys):
    """mocked: the emulator lacks image block public access."""
    source, path = seed
    emulated.bpa["us-east-2"] = "block-new-sharing"
    assert publish_ami(emulated.aws, manifest=path, dry_run=True, disable_block_public_access=True, **FAST) == []
    out = capsys.readouterr()
    assert f"us-east-2: copy us-east-1:{source}" in out.out
    assert "us-east-1: publish the source image" in out.out
    assert "would turn off image block public access" in out.err
    assert emulated.mutating() == []
    assert emulated.calls, "the plan reads the account"
    emulated.forget()
    with pytest.raises(PublishError, match="disable-image-block-public-access --region us-east-2"):
        publish_ami(emulated.aws, manifest=path, dry_run=True, **FAST)
    assert f"us-east-2: copy us-east-1:{source}" in capsys.readouterr().out  # the plan, then the refusal
    assert emulated.mutating() == []
    assert images(emulated, "us-west-2") == [] and not only_image(emulated, "us-east-1")["Public"]


def test_aws_refusal_in_the_gate_is_one_clear_line(emulated, seed):
    """mocked: the emulator lacks GetImageBlockPublicAccessState; here it answers access denied."""
    _, path = seed
    emulated.fail("us-west-2", "GetImageBlockPublicAccessState", code="UnauthorizedOperation")
    with pytest.raises(PublishError, match="AWS refused GetImageBlockPublicAccessState: UnauthorizedOperation"):
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert emulated.mutating() == []


def test_copies_run_concurrently_and_are_waited_for(emulated, seed, monkeypatch):
    """Copies stay pending for a while (as on AWS); every region's copy starts before any copy is
    finished, and each is polled until available. mocked: block public access, deprecation."""
    _, path = seed
    SlowCopies(monkeypatch, seconds=0.5)
    publish_ami(emulated.aws, manifest=path, **FAST)
    copies = [emulated.calls.index(c) for c in emulated.ops(operation="CopyImage")]
    first_change = min(emulated.calls.index(c) for c in emulated.mutating()
                       if c.region != "us-east-1" and c.operation == "ModifyImageAttribute")
    assert len(copies) == 2 and max(copies) < first_change
    for region in ("us-east-2", "us-west-2"):
        assert len(emulated.ops(region, "DescribeImages")) > 5  # polled while pending
        assert only_image(emulated, region)["Public"] is True


def test_failed_copy_is_removed_and_reported(emulated, seed, monkeypatch):
    """A copy that ends `failed` is deregistered (with its snapshots) and the region reported.
    mocked: block public access, deprecation."""
    _, path = seed
    SlowCopies(monkeypatch, seconds=0.05, fail=True)
    with pytest.raises(PublishError) as err:
        publish_ami(emulated.aws, manifest=path, **FAST)
    assert "published in us-east-1;" in str(err.value) and "injected: the copy failed" in str(err.value)
    assert sorted(c.region for c in emulated.ops(operation="DeregisterImage")) == ["us-east-2", "us-west-2"]
    for region in ("us-east-2", "us-west-2"):
        assert images(emulated, region) == []
        assert emulated.setup.ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
