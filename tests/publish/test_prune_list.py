"""`prune` and `list` against the emulator (no call here is missing from it, except in the publish +
prune test: image block public access and EnableImageDeprecation are mocked, the emulator lacks them)."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from condor_seed.aws.inventory import format_table, inventory
from condor_seed.aws.prune import prune
from condor_seed.aws.publish import publish_ami
from condor_seed.recipe import load_recipe
from publish_helpers import PARAMETER, make_seed, write_manifest

REGION = "us-east-1"
DAY = dt.timedelta(days=1)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def recipe():
    return load_recipe("rhel9-x86_64")


def seeds(emulated, count: int, *, public=True, region=REGION) -> list[str]:
    """`count` published seeds, oldest first, a day apart."""
    return [make_seed(emulated.setup, region=region, build_id=f"old-{n}", created=EPOCH + n * DAY, public=public)
            for n in range(count)]


def point(emulated, image_id: str, region=REGION) -> None:
    emulated.setup.ssm(region).put_parameter(Name=PARAMETER, Value=image_id, Type="String",
                                             DataType="aws:ec2:image", Overwrite=True)


def live(emulated, region=REGION) -> dict[str, dict]:
    return {i["ImageId"]: i for i in emulated.setup.ec2(region).describe_images(Owners=["self"])["Images"]}


def snapshots(emulated, region=REGION) -> set[str]:
    return {s["SnapshotId"] for s in emulated.setup.ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_prune_keeps_newest_and_the_announced_one(emulated, recipe):
    images = seeds(emulated, 5)
    point(emulated, images[0])
    snaps_before = snapshots(emulated)
    prune(emulated.aws, recipe, regions=[REGION], keep=2)

    left = live(emulated)
    assert set(left) == {images[4], images[3], images[0]}
    gone = [images[1], images[2]]
    gone_snaps = {c.params["SnapshotId"] for c in emulated.ops(REGION, "DeleteSnapshot")}
    assert len(gone_snaps) == 2 and snapshots(emulated) == snaps_before - gone_snaps
    for image_id in gone:  # private first, then deregister, then its snapshots
        steps = [c.operation for c in emulated.mutating() if c.params.get("ImageId") == image_id]
        assert steps == ["ModifyImageAttribute", "DeregisterImage"]
        first = emulated.calls.index(next(c for c in emulated.mutating() if c.params.get("ImageId") == image_id))
        assert emulated.calls[first].params["LaunchPermission"] == {"Remove": [{"Group": "all"}]}


def test_prune_never_leaves_more_than_five_public(emulated, recipe):
    images = seeds(emulated, 6)
    point(emulated, images[0])
    prune(emulated.aws, recipe, regions=[REGION], keep=5)
    left = live(emulated)
    assert set(left) == set(images)  # all kept: newest five plus the announced one ...
    assert sorted(i for i, image in left.items() if not image["Public"]) == [images[1]]  # ... one made private


def test_prune_leaves_other_recipes_alone(emulated, recipe):
    mine = seeds(emulated, 2)
    other = make_seed(emulated.setup, recipe="rhel8-x86_64", build_id="other", created=EPOCH)
    prune(emulated.aws, recipe, regions=[REGION], keep=1)
    assert set(live(emulated)) == {mine[1], other}


def test_prune_dry_run_changes_nothing(emulated, recipe, capsys):
    images = seeds(emulated, 4)
    prune(emulated.aws, recipe, regions=[REGION], keep=1, dry_run=True)
    assert emulated.mutating() == []
    out = capsys.readouterr().out
    assert all(f"delete       {i}" in out for i in images[:3]) and f"keep         {images[3]}" in out
    assert len(live(emulated)) == 4


def test_publish_rotates_when_the_recipe_asks(emulated, recipe, tmp_path):
    """mocked: the emulator lacks image block public access and EnableImageDeprecation."""
    old = seeds(emulated, 3)
    point(emulated, old[2])
    new = make_seed(emulated.setup, build_id="new")
    path = write_manifest(tmp_path, new, build_id="new", build_time=int(time.time()))
    publish_ami(emulated.aws, manifest=path, regions=[REGION], poll_interval=0.01)
    left = live(emulated)
    assert set(left) == {new, old[2], old[1]}  # keep: 3
    assert all(image["Public"] for image in left.values())
    assert emulated.setup.ssm(REGION).get_parameter(Name=PARAMETER)["Parameter"]["Value"] == new
    rotated = [c for c in emulated.ops(REGION, "DeregisterImage")]
    assert [c.params["ImageId"] for c in rotated] == [old[0]]
    make_public = next(c for c in emulated.ops(REGION, "ModifyImageAttribute")
                       if c.params.get("ImageId") == new and "LaunchPermission" in c.params)
    assert emulated.calls.index(rotated[0]) < emulated.calls.index(make_public)  # room first, then public


def test_list_shows_each_region_with_the_latest(emulated, recipe):
    images = seeds(emulated, 2)
    private = make_seed(emulated.setup, region="us-west-2", build_id="w")
    point(emulated, images[1])
    rows = inventory(emulated.aws, recipe, regions=[REGION, "us-west-2", "us-east-2"])
    assert [(r.region, r.image, r.public, r.latest) for r in rows] == [
        (REGION, images[1], "yes", "latest"), (REGION, images[0], "yes", ""), ("us-west-2", private, "no", "")]
    table = format_table(rows, [REGION, "us-west-2", "us-east-2"])
    assert table.splitlines()[0].split() == ["region", "image", "created", "public", "deprecation", "latest"]
    assert "us-east-2: no seed images" in table
    assert rows[0].created.startswith("2026-01-02")
    assert emulated.mutating() == []
