"""`invoke nightly` against the emulator: build+publish once, then "up to date" with no instance
launched; --force, a changed template and a newer base image rebuild; a region that lost its seed is
published again from the built image (test_resume.py: resuming in full); one recipe's failure leaves the
others alone; the command line prints the summary table."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from condor_seed import manifest, paths
from condor_seed.aws.catalog import SOURCE_AMI_TAG
from condor_seed.aws.tags import FINGERPRINT_TAG, RECIPE_TAG
from condor_seed.errors import RecipeError
from condor_seed.fingerprint import fingerprint
from condor_seed.nightly import BUILT, RESUMED, UP_TO_DATE, failure_summary, format_table, is_published, select_recipes
from condor_seed.recipe import load_recipe
from condor_seed.render import render

from condor_seed.emulator.aws import add_image, backend, private_recipe, sigterm_during_bake
from publish_helpers import REGIONS, is_mutating

PROJECT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.timezone.utc)


def test_first_nightly_publishes_second_is_up_to_date_without_launching(night):
    first = night.run()["rhel9-x86_64"]
    assert first.ok and first.action == BUILT, first.action
    assert list(first.amis) == REGIONS
    # The fingerprint the build tagged is the one nightly computed (same base image and upstream condor, same call).
    assert first.fingerprint == fingerprint(render(load_recipe("rhel9-x86_64")), night.bases["rhel9"], "24.0.12-1.el9")
    for region, image_id in first.amis.items():
        image = night.image(region, image_id)
        assert image["Public"] is True and image["State"] == "available"
        assert night.tags(region, image_id)[FINGERPRINT_TAG] == first.fingerprint
    build = manifest.find_build(manifest.load(manifest.path_for("rhel9-x86_64", night.tmp_path / "manifests")))
    assert build["custom_data"]["smoke_test"] == "passed"
    assert build["custom_data"]["fingerprint"] == first.fingerprint
    assert manifest.parse_artifact_id(build["artifact_id"]) == first.amis
    assert night.count("RunInstances") == 2  # the builder and the smoke test

    second = night.run()["rhel9-x86_64"]
    assert second.ok and second.action == UP_TO_DATE
    assert second.amis == first.amis
    assert night.count("RunInstances") == 0
    assert not [c.operation for c in night.emulated.calls if is_mutating(c)]
    # credentials + region, the base image, one DescribeImages per target region
    assert len(night.emulated.calls) == 2 + 1 + len(REGIONS)
    assert night.live_instances() == []


def test_force_rebuilds_an_up_to_date_recipe(night):
    first = night.run()["rhel9-x86_64"]
    forced = night.run(force=True)["rhel9-x86_64"]
    assert forced.ok and forced.action == BUILT
    assert forced.fingerprint == first.fingerprint
    assert set(forced.amis.values()).isdisjoint(first.amis.values())
    assert night.count("RunInstances") == 2
    assert night.run()["rhel9-x86_64"].amis == forced.amis  # the newest published seed is the current one


def test_changed_template_rebuilds(night, monkeypatch, tmp_path):
    first = night.run()["rhel9-x86_64"]
    templates = tmp_path / "templates"
    shutil.copytree(paths.TEMPLATES_DIR, templates)
    config = templates / "condor" / "config.d" / "99-seed-runtime.config.j2"
    config.write_text(config.read_text() + "# a changed template\n")
    monkeypatch.setattr("condor_seed.render.TEMPLATES_DIR", templates)

    changed = night.run()["rhel9-x86_64"]
    assert changed.ok and changed.action == BUILT
    assert changed.fingerprint != first.fingerprint
    assert night.tags("us-east-1", changed.amis["us-east-1"])[FINGERPRINT_TAG] == changed.fingerprint
    assert night.run()["rhel9-x86_64"].action == UP_TO_DATE


def test_newer_base_image_rebuilds(night):
    first = night.run("rhel8-x86_64")["rhel8-x86_64"]
    newer = add_image("us-east-1", "ami-0ddd0000000rhel8b", "RHEL-8.10.0_HVM-20240901-x86_64-2-Hourly2-GP3",
                      date="2024-09-01")
    rebuilt = night.run("rhel8-x86_64")["rhel8-x86_64"]
    assert rebuilt.ok and rebuilt.action == BUILT and rebuilt.fingerprint != first.fingerprint
    assert [c.params["ImageId"] for c in night.emulated.ops(operation="RunInstances")][0] == newer


def test_a_region_missing_its_published_seed_is_published_again_from_the_built_image(night):
    first = night.run()["rhel9-x86_64"]
    night.setup.ec2("us-west-2").deregister_image(ImageId=first.amis["us-west-2"])
    again = night.run()["rhel9-x86_64"]
    assert again.action == RESUMED and list(again.amis) == REGIONS  # the smoke-tested source is still there
    assert night.count("RunInstances") == 0
    assert [c.region for c in night.emulated.ops(operation="CopyImage")] == ["us-west-2"]


def test_one_failing_recipe_does_not_stop_the_others(night, capsys):
    night.guest.failing = {"rhel8-x86_64"}
    runs = night.run("rhel9-x86_64,rhel8-x86_64")
    out, err = capsys.readouterr()
    assert out == ""  # the table is the command's; every log line says whose it is, publish's region lines too
    lines = [line.split("] ", 1)[1] for line in err.splitlines() if line.startswith("[")]
    assert lines and all(line.startswith(("[rhel9-x86_64] ", "[rhel8-x86_64] ")) for line in lines), lines
    assert "[rhel9-x86_64] us-west-2: published ami-" in err and "[rhel9-x86_64] us-east-2: copying" in err
    assert runs["rhel9-x86_64"].ok and runs["rhel9-x86_64"].action == BUILT
    failed = runs["rhel8-x86_64"]
    assert not failed.ok and failed.action.startswith("FAILED: bake failed")
    assert "FAILED recipe=rhel8-x86_64" in failed.action and "\n" not in failed.action
    assert "rhel8-x86_64" in str(failure_summary(list(runs.values())))
    assert night.live_instances() == []
    table = format_table(list(runs.values())).splitlines()
    assert len(table) == 3 and any(line.startswith("rhel8-x86_64") and "FAILED: bake failed" in line for line in table)
    # The failed recipe stays stale, the other is up to date; a rerun only rebuilds the failed one.
    night.guest.failing = set()
    rerun = night.run("rhel9-x86_64,rhel8-x86_64")
    assert (rerun["rhel9-x86_64"].action, rerun["rhel8-x86_64"].action) == (UP_TO_DATE, BUILT)


def test_failed_smoke_test_publishes_nothing_and_removes_the_image(night):
    night.guest.seed = "fail"
    run = night.run("rhel8-x86_64")["rhel8-x86_64"]
    assert not run.ok and "daemons not up in time" in run.action and run.amis == {}
    assert night.setup.ec2("us-east-1").describe_images(Owners=["self"])["Images"] == []
    build = manifest.find_build(manifest.load(manifest.path_for("rhel8-x86_64", night.tmp_path / "manifests")))
    assert build["custom_data"]["smoke_test"] == "failed"
    assert not night.emulated.ops(operation="PutParameter")


def test_recipe_selection():
    assert "debian13-local" not in [r.name for r in select_recipes("all")]
    assert {r.target for r in select_recipes("all")} == {"ec2"}
    with pytest.raises(RecipeError, match="debian13-local has target local"):
        select_recipes("rhel9-x86_64,debian13-local")


@pytest.mark.parametrize("change, published", [
    ({}, True),
    ({"Public": False}, False),  # the recipe publishes publicly: publish has not finished
    ({"State": "pending"}, False),
    ({"Tags": [{"Key": FINGERPRINT_TAG, "Value": "sha256:x"}, {"Key": RECIPE_TAG, "Value": "rhel9-x86_64"}]}, False),
    ({"DeprecationTime": "2026-11-27T02:59:00.000Z"}, False),
    ({"DeprecationTime": "2027-02-25T03:00:00.000Z"}, True),
])
def test_what_counts_as_published(change, published):
    image = {"ImageId": "ami-1", "State": "available", "Public": True,
             "Tags": [{"Key": FINGERPRINT_TAG, "Value": "sha256:x"}, {"Key": RECIPE_TAG, "Value": "rhel9-x86_64"},
                      {"Key": SOURCE_AMI_TAG, "Value": "us-east-1:ami-1"}]}
    assert is_published(image | change, load_recipe("rhel9-x86_64"), "sha256:x", NOW) is published


def test_command_line_prints_the_table_and_fails_when_a_recipe_fails(night):
    published = night.run()["rhel9-x86_64"]
    del backend("us-east-1").amis[night.bases["rhel8"]]  # rhel8-x86_64 has no base image any more
    proc = subprocess.run([sys.executable, "-m", "invoke", "nightly", "--recipe", "rhel9-x86_64,rhel8-x86_64",
                           "--region", "us-east-1", "--poll-interval", "0.05"],
                          cwd=PROJECT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["recipe", "duration", "AMI", "per", "region", "changes", "action"]
    ok = next(line for line in lines if line.startswith("rhel9-x86_64 "))
    assert ok.endswith(UP_TO_DATE) and ",".join(f"{r}:{a}" for r, a in published.amis.items()) in ok
    bad = next(line for line in lines if line.startswith("rhel8-x86_64 "))
    assert "FAILED: no base image for rhel8-x86_64" in bad
    assert proc.stderr.strip().splitlines()[-1] == "error: 1 of 2 recipes failed: rhel8-x86_64 (see the table)"
    assert "[rhel9-x86_64] up to date" in proc.stderr


def test_sigterm_during_a_nightly_build_undoes_it(night, tmp_path):
    night.guest.mode = "hang"  # the guest never finishes its bake
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "nightly", "--recipe",
                             str(private_recipe(tmp_path / "recipes", PROJECT)), "--region", "us-east-1",
                             "--poll-interval", "0.05"],
                            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = sigterm_during_bake(proc)
    assert proc.returncode == 130, err
    assert "[rhel9-private] terminated builder" in err and "[rhel9-private] deleted security group" in err
    assert night.live_instances() == []
    ec2 = night.setup.ec2("us-east-1")
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]
    assert ec2.describe_images(Owners=["self"])["Images"] == []
