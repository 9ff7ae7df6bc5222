"""`smoke-test` and `cleanup` against the emulator."""
from __future__ import annotations

import datetime as dt

import pytest

from condor_seed import manifest
from condor_seed.aws import tags as T
from condor_seed.aws.build import Build, build_recipe
from condor_seed.aws.cleanup import cleanup, parse_duration
from condor_seed.aws.smoke import READY_LINE, SmokeFailed, record_result, smoke_test
from condor_seed.errors import SeedError
from condor_seed.recipe import load_recipe


def built(emu):
    return build_recipe(emu.aws, load_recipe("rhel9-x86_64"), emu.options(), report=lambda m: None)


def smoke(emu, image_id, **options):
    options = dict(dict(poll_interval=0.02, timeout=10.0, report_every=0.2), **options)
    return smoke_test(emu.aws, "us-east-1", image_id, report=lambda m: None, **options)


def test_smoke_test_boots_the_image_and_requires_both_markers(emu):
    result = built(emu)
    finished = emu.snapshot_state()
    smoked = smoke(emu, result.image_id)
    assert READY_LINE in smoked.console and "CONDOR-SEED-BOOT:" in smoked.console
    run = emu.recorder.ops("RunInstances")[-1].params
    assert run["ImageId"] == result.image_id and run["InstanceType"] == "t3.large"
    assert run["MetadataOptions"]["HttpTokens"] == "required"
    assert "UserData" not in run and "KeyName" not in run and "IamInstanceProfile" not in run
    instance = emu.ec2.describe_instances(InstanceIds=[smoked.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    assert T.tag_dict(instance["Tags"])[T.ROLE_TAG] == "smoke-test"
    assert not emu.recorder.ops("AuthorizeSecurityGroupIngress")
    assert emu.snapshot_state() == finished  # only the image and its snapshots remain
    # what `invoke smoke-test` then records for `publish-ami`
    path, entry = manifest.find_by_ami("us-east-1", result.image_id, emu.tmp_path / "manifests")
    manifest.set_result(path, entry["packer_run_uuid"], "smoke_test", "passed")
    assert manifest.find_build(manifest.load(path))["custom_data"]["smoke_test"] == "passed"
    assert smoked.ours  # and on the image, where a later nightly finds it (a CI run's manifest is gone)
    record_result(emu.aws.ec2("us-east-1"), result.image_id, "passed")
    image = emu.ec2.describe_images(ImageIds=[result.image_id])["Images"][0]
    assert T.tag_dict(image["Tags"])[T.SMOKE_TEST_TAG] == "passed"


@pytest.mark.parametrize("seed, message", [("fail", "daemons not up in time"), ("silent", "timed out"),
                                           ("no-first-boot", "no first-boot marker")])
def test_smoke_test_failure_leaves_nothing_behind(emu, seed, message):
    result = built(emu)
    finished = emu.snapshot_state()
    emu.guest.seed = seed
    with pytest.raises(SmokeFailed, match=message):
        smoke(emu, result.image_id, timeout=0.6)
    assert emu.snapshot_state() == finished


def test_smoke_test_refuses_a_missing_image(emu):
    with pytest.raises(SeedError, match="ami-00000000000000000 in us-east-1: not found"):
        smoke(emu, "ami-00000000000000000")
    assert emu.leaks() == {}


def killed_run(emu) -> Build:
    """What a SIGKILLed build leaves: builder stopped, image created, nothing undone."""
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # not the same AMI name as a build now
    run = Build(emu.aws, load_recipe("rhel9-x86_64"), emu.options(now=lambda: started), report=lambda m: None)
    for step in run.steps():
        step.run()
        if step.name == "create image":
            return run
    raise AssertionError("no create image step")


def test_cleanup_finds_a_killed_run_by_tag_and_keeps_finished_images(emu):
    kept = built(emu)
    kept_state = emu.snapshot_state()
    killed = killed_run(emu)
    left = emu.leaks()
    assert killed.instance_id in left["instances"] and killed.group_id in left["security_groups"]
    assert killed.image_id in left["images"]
    reports = []

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)  # past the expiry tag
    dry = cleanup(emu.aws, "us-east-1", older_than=dt.timedelta(0), dry_run=True, report=reports.append, now=later)
    assert {(i.kind, i.id) for i in dry} >= {("instance", killed.instance_id), ("image", killed.image_id),
                                             ("security-group", killed.group_id)}
    assert all(i.build_id == killed.build_id for i in dry)
    assert any(line.startswith("would remove instance") for line in reports)
    assert emu.leaks() == left  # a dry run changes nothing

    young = cleanup(emu.aws, "us-east-1", older_than=parse_duration("0h"), dry_run=False, report=reports.append)
    assert young == [] and emu.leaks() == left  # not expired: the run may still be going, whatever --older-than

    removed = cleanup(emu.aws, "us-east-1", older_than=parse_duration("6h"), dry_run=False, report=reports.append,
                      now=later)
    assert {i.kind for i in removed} >= {"instance", "security-group", "image"}
    assert emu.snapshot_state() == kept_state  # the finished image and its snapshots stay
    assert kept.image_id in emu.snapshot_state()["images"]


def test_a_live_build_survives_a_concurrent_janitor_with_older_than_0h(emu):
    """nightly.yml runs `cleanup --older-than 0h` while another build may be mid-bake."""
    run = Build(emu.aws, load_recipe("rhel9-x86_64"), emu.options(), report=lambda m: None)
    steps = iter(run.steps())
    for step in steps:
        step.run()
        if step.name == "launch builder":
            break
    else:
        raise AssertionError("no launch builder step")
    mid_bake = emu.leaks()
    assert run.instance_id in mid_bake["instances"]
    reports = []
    removed = cleanup(emu.aws, "us-east-1", older_than=parse_duration("0h"), dry_run=False, report=reports.append)
    assert removed == [] and emu.leaks() == mid_bake
    assert any("not yet expired" in line for line in reports)
    for step in steps:  # the build goes on and finishes
        step.run()
    image = emu.ec2.describe_images(ImageIds=[run.image_id])["Images"][0]
    assert image["State"] == "available" and T.EXPIRES_TAG not in T.tag_dict(image["Tags"])


def test_a_run_is_live_while_any_of_its_resources_has_a_future_expiry():
    from condor_seed.aws.cleanup import Leftover, due, live_builds
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    old = now - dt.timedelta(days=3)
    expired = Leftover("image", "ami-1", "b1", "r", old, now - dt.timedelta(hours=1), {})
    ahead = Leftover("instance", "i-1", "b1", "r", old, now + dt.timedelta(hours=1), {})
    unreadable = Leftover("snapshot", "snap-1", "b2", "r", old, None, {})
    live = live_builds([expired, ahead, unreadable], now)
    assert live == {"b1"}
    assert not due(expired, now, dt.timedelta(0), live) and not due(ahead, now, dt.timedelta(0), live)
    assert due(unreadable, now, dt.timedelta(hours=6), live)
    assert not due(unreadable, now, dt.timedelta(days=4), live)
    assert due(expired, now, dt.timedelta(days=9), set())  # expired: --older-than does not keep it


@pytest.mark.parametrize("text, seconds", [("6h", 21600), ("90m", 5400), ("2d", 172800), ("0", 0), ("45s", 45)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_bad_duration_is_one_line():
    with pytest.raises(SeedError, match="--older-than 'six hours'"):
        parse_duration("six hours")
