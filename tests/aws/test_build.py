"""`build-seed` against the emulator: the happy path asserted resource by resource, then each way a
build can fail, every one ending with nothing left behind (listed through the API)."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from condor_seed import manifest
from condor_seed.aws import tags as T
from condor_seed.aws.build import build_recipe, build_recipes
from condor_seed.aws.instances import GuestFailed
from condor_seed.aws.tags import tag_dict
from condor_seed.aws.waiters import WaitFailed
from condor_seed.errors import PreflightError
from condor_seed.fingerprint import fingerprint
from condor_seed.packages import PackageReportError
from condor_seed.recipe import load_recipe
from condor_seed.render import render
from condor_seed.userdata import encode_user_data

FIXED_NOW = dt.datetime(2026, 11, 27, 3, 0, 0, tzinfo=dt.timezone.utc)


def build(emu, recipe="rhel9-x86_64", lines=None, **overrides):
    lines = lines if lines is not None else []
    return build_recipe(emu.aws, load_recipe(recipe), emu.options(**overrides), report=lines.append)


def test_happy_path_every_resource_and_tag(emu):
    lines = []
    recipe = load_recipe("rhel9-x86_64")
    emu.images.seconds = 0.3  # the image is pending for a while: image_exists, then image_available
    result = build(emu, lines=lines, now=lambda: FIXED_NOW)
    base_id = emu.bases["rhel9"]  # the newest matching Red Hat image (not gp2, not the impostor's)
    fp = fingerprint(render(recipe), base_id)

    # The builder: launched as specified, then terminated.
    run = emu.recorder.ops("RunInstances")
    assert len(run) == 1
    params = run[0].params
    assert params["ImageId"] == base_id
    assert params["InstanceType"] == "t3.large"
    assert params["MetadataOptions"]["HttpTokens"] == "required"
    assert params["InstanceInitiatedShutdownBehavior"] == "stop"
    assert "KeyName" not in params and "IamInstanceProfile" not in params
    assert params["ClientToken"] == f"condor-seed-{result.build_id}-builder"
    assert base64.b64decode(params["UserData"]) == encode_user_data(render(recipe).bake_script.content)
    assert params["BlockDeviceMappings"] == [{"DeviceName": "/dev/sda1", "Ebs": {
        "VolumeSize": 20, "VolumeType": "gp3", "DeleteOnTermination": True, "Encrypted": False}}]
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {"instance", "volume"}
    instance_id = emu.recorder.ops("CreateImage")[0].params["InstanceId"]
    instance = emu.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert not instance.get("KeyName") and not instance.get("IamInstanceProfile")
    itags = tag_dict(instance["Tags"])
    assert itags[T.BUILD_ID_TAG] == result.build_id and itags[T.RECIPE_TAG] == "rhel9-x86_64"
    assert itags[T.FINGERPRINT_TAG] == fp and itags[T.BASE_AMI_TAG] == base_id and itags["Project"] == "condor-seed"
    assert T.parse_utc(itags[T.EXPIRES_TAG]) > FIXED_NOW
    assert emu.guest.seen[instance_id] == "bake rhel9-x86_64 (success)"

    # The security group: no inbound rule, tagged, deleted at the end.
    sg = emu.recorder.ops("CreateSecurityGroup")[0]
    assert tag_dict(sg.params["TagSpecifications"][0]["Tags"])[T.BUILD_ID_TAG] == result.build_id
    assert not emu.recorder.ops("AuthorizeSecurityGroupIngress")
    assert emu.recorder.ops("DeleteSecurityGroup")

    # The image and its snapshots: tagged (expiry removed once finished), IMDSv2 only.
    image = emu.ec2.describe_images(ImageIds=[result.image_id])["Images"][0]
    assert image["State"] == "available"
    assert image["Name"] == "htcondor-seed-rhel9-x86_64-24.0-20261127-030000"
    assert image["Description"] == recipe.ami_description()
    # The SBOM from the guest's package report: its digest and the package list's on the image.
    custom = json.loads(result.manifest_path.read_text())["builds"][-1]["custom_data"]
    sbom_path = Path(custom["sbom"])
    assert sbom_path == emu.tmp_path / "sbom" / f"{result.build_id}.cdx.json"
    assert custom["sbom_sha256"] == hashlib.sha256(sbom_path.read_bytes()).hexdigest()
    assert custom["package_count"] == "601" and custom["condor_package"] == "24.0.5-1.el9"
    want = {T.BUILD_ID_TAG: result.build_id, T.RECIPE_TAG: "rhel9-x86_64", T.FINGERPRINT_TAG: fp,
            T.BASE_AMI_TAG: base_id, "Name": image["Name"], "Project": "condor-seed", T.ROLE_TAG: "image",
            T.HTCONDOR_TAG: "24.0", T.SBOM_TAG: custom["sbom_sha256"], T.PACKAGES_TAG: custom["packages_sha256"]}
    assert tag_dict(image["Tags"]) == want
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]
    for snap in emu.ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]:
        assert tag_dict(snap["Tags"]) == want
    # ...by CreateImage itself (the policy lets the builder tag no other snapshot), never afterwards.
    assert not [c for c in emu.recorder.ops("CreateTags") if any(r.startswith("snap-") for r in c.params["Resources"])]
    # not marked ImdsSupport=v2.0: condor_annex's GAHP needs token-less metadata (README, IMDS)
    assert not [c for c in emu.recorder.calls if c.operation == "ModifyImageAttribute" and "ImdsSupport" in c.params]
    assert not image.get("Public")

    # Waiters: existence was awaited before availability; polling really happened.
    waits = [c.operation for c in emu.recorder.calls if c.operation == "DescribeImages"]
    assert len(waits) >= 3

    # The manifest, in Packer's shape.
    data = json.loads(result.manifest_path.read_text())
    assert result.manifest_path == emu.tmp_path / "manifests" / "rhel9-x86_64.json"
    assert data["last_run_uuid"] == result.build_id
    entry = data["builds"][-1]
    assert entry["name"] == "rhel9-x86_64" and entry["builder_type"] == "condor-seed.amazon-ebs"
    assert entry["artifact_id"] == f"us-east-1:{result.image_id}" and entry["files"] is None
    assert entry["packer_run_uuid"] == result.build_id and entry["build_time"] == int(FIXED_NOW.timestamp())
    assert entry["custom_data"] == {
        "recipe": "rhel9-x86_64", "fingerprint": fp, "base_ami": base_id,
        "base_ami_name": "RHEL-9.4.0_HVM-20240605-x86_64-82-Hourly2-GP3", "base_ami_date": "2024-06-05T00:00:00.000Z",
        "htcondor_version": "24.0.5", "build_id": result.build_id, "ami_name": image["Name"],
        "secret_scan": "passed", "smoke_test": "not-run", "encrypted": "false", "htcondor_fingerprint": "24.0",
        "sbom": str(sbom_path), "sbom_sha256": custom["sbom_sha256"], "packages_sha256": custom["packages_sha256"],
        "package_count": "601", "condor_package": "24.0.5-1.el9",
    }
    assert all(isinstance(v, str) for v in entry["custom_data"].values())

    # Preflight looked at block public access in every target region of this public recipe.
    assert emu.gaps.answered["GetImageBlockPublicAccessState"] == 3
    assert {c.region for c in emu.recorder.ops("GetImageBlockPublicAccessState")} == set(recipe.regions)
    assert any("done in" in line for line in lines)
    # Nothing but the image and its snapshots remains.
    assert emu.leaks() == {"images": {result.image_id}, "snapshots": set(snapshot_ids)}


def test_bake_failure_marker_shows_the_console_tail(emu):
    emu.guest.mode = "fail"
    with pytest.raises(GuestFailed) as err:
        build(emu)
    assert "FAILED recipe=rhel9-x86_64 line=42" in str(err.value)
    assert "console tail:" in str(err.value) and "step: install HTCondor" in str(err.value)
    assert not emu.recorder.ops("CreateImage")
    assert emu.leaks() == {}


def test_a_package_report_cut_short_fails_the_build_before_any_image(emu, monkeypatch):
    """The guest's report lost its first lines (as when the console rolled past 64 KB): no SBOM, no image."""
    import condor_seed.emulator.aws as guest_module

    full = guest_module.report_lines
    monkeypatch.setattr(guest_module, "report_lines", lambda packages, marker: full(packages, marker)[3:])
    with pytest.raises(PackageReportError, match="first line is not in the console output"):
        build(emu)
    assert not emu.recorder.ops("CreateImage") and not list((emu.tmp_path / "sbom").glob("*"))
    assert emu.leaks() == {}


# Assembled at run time so this repository never holds a detectable key itself.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
PRIVATE_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize("path, content, reason", [
    ("/var/spool/cron/root", f"0 * * * * AWS_ACCESS_KEY_ID={AWS_KEY} aws s3 sync /data s3://x\n", "AWS Access Key"),
    ("/opt/tool/deploy.pem", PRIVATE_KEY, "Private Key"),
    ("/usr/share/tool/config.ini", f"key = {AWS_KEY}\n", "AWS Access Key"),
    ("/home/ec2-user/.ssh/id_dsa", "x", "forbidden path"),
    ("/home/alice/.condor/tokens.d/annex", "eyJhbGciOiJIUzI1NiJ9.e30.x", "forbidden path"),
])
def test_a_secret_left_in_the_guest_stops_the_ec2_build(emu, path, content, reason):
    """The bake script's own leak check (from leak_rules, the list scan.py uses) runs in the guest."""
    emu.guest.planted = {path: content.encode()}
    with pytest.raises(GuestFailed) as err:
        build(emu)
    assert f"scan found: {path}: {reason}" in str(err.value)
    assert not emu.recorder.ops("CreateImage")
    assert emu.leaks() == {}


def test_a_key_in_a_large_binary_file_stops_the_ec2_build(emu):
    blob = b"\x7fELF\0\0" + os.urandom(2 << 20) + b"\0" + AWS_KEY.encode() + b"\0"
    emu.guest.planted = {"/usr/lib/libleaky.so": blob, "/usr/bin/ssh": b"\x7fELF\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0"}
    with pytest.raises(GuestFailed) as err:
        build(emu)
    assert "scan found: /usr/lib/libleaky.so: AWS Access Key" in str(err.value)
    assert "/usr/bin/ssh" not in str(err.value)  # a program holding the header string is no key


def test_guest_that_never_powers_off_times_out_and_is_terminated(emu):
    emu.guest.mode = "hang"
    lines = []
    with pytest.raises(GuestFailed) as err:
        build(emu, lines=lines, timeout=0.6, report_every=0.2)
    assert "timed out" in str(err.value) and "builder" in str(err.value)
    assert any("still waiting for builder" in line for line in lines)
    assert emu.recorder.ops("TerminateInstances")
    assert emu.leaks() == {}


def test_throttling_on_several_calls_is_retried(emu):
    from condor_seed.emulator.aws import Throttle

    throttle = Throttle(emu.aws.session, ["CreateSecurityGroup", "RunInstances", "DescribeInstances",
                                          "CreateImage", "DescribeImages", "DeleteTags"])
    result = build(emu)
    assert sum(throttle.injected.values()) == 6
    assert len(emu.recorder.ops("RunInstances")) == 1  # retried by botocore, not by us
    assert emu.leaks() == {"images": {result.image_id}, "snapshots": emu.leaks()["snapshots"]}


def test_create_image_rejected_undoes_everything(emu, monkeypatch):
    from moto.ec2.exceptions import InvalidParameterValueError
    from moto.ec2.models.amis import AmiBackend

    def refuse(*args, **kwargs):
        raise InvalidParameterValueError("emulated: the instance volume cannot be imaged")

    monkeypatch.setattr(AmiBackend, "create_image", refuse)
    with pytest.raises(Exception, match="cannot be imaged"):
        build(emu)
    assert emu.leaks() == {}


def test_image_that_fails_reports_the_state_reason_and_is_removed(emu):
    emu.images.seconds = 0.1
    emu.images.fail_reason = ("Client.InternalError", "Snapshot creation failed")
    with pytest.raises(WaitFailed) as err:
        build(emu)
    assert "failed: Client.InternalError: Snapshot creation failed" in str(err.value)
    assert emu.recorder.ops("DeregisterImage") and emu.recorder.ops("DeleteSnapshot")
    assert emu.leaks() == {}


def test_ctrl_c_during_the_bake_wait_undoes_everything(emu):
    emu.guest.mode = "hang"
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) == 3:  # well inside the wait for the guest to power off
            raise KeyboardInterrupt
        time.sleep(seconds)

    lines = []
    with pytest.raises(KeyboardInterrupt):
        build(emu, lines=lines, sleep=sleep)
    assert any("bake: failed (interrupted)" in line for line in lines)
    assert emu.recorder.ops("RunInstances") and not emu.recorder.ops("CreateImage")
    assert emu.leaks() == {}


def test_existing_ami_name_is_refused_then_replaced_with_force(emu):
    first = build(emu, now=lambda: FIXED_NOW)
    before = emu.snapshot_state()
    with pytest.raises(PreflightError, match="already exists.*--force"):
        build(emu, now=lambda: FIXED_NOW)
    assert emu.snapshot_state() == before  # refused before creating anything
    second = build(emu, now=lambda: FIXED_NOW, force=True)
    images = emu.ec2.describe_images(Owners=["self"])["Images"]
    assert [i["ImageId"] for i in images] == [second.image_id]
    old_snapshots = {c.params["SnapshotId"] for c in emu.recorder.ops("DeleteSnapshot")}
    assert old_snapshots and not old_snapshots & {s["SnapshotId"] for s in emu.ec2.describe_snapshots()["Snapshots"]}
    assert first.image_id not in {i["ImageId"] for i in images}


def test_public_recipe_refused_when_ebs_encryption_is_on(emu):
    emu.ec2.enable_ebs_encryption_by_default()
    with pytest.raises(PreflightError, match="encryption by default is on in us-east-1.*cannot be made public"):
        build(emu)
    assert not emu.recorder.ops("RunInstances") and emu.leaks() == {}


def test_public_recipe_refused_when_block_public_access_is_on_in_a_target_region(emu):
    emu.gaps.block_public_access["us-west-2"] = "block-new-sharing"
    with pytest.raises(PreflightError, match="block public access is 'block-new-sharing' in us-west-2.*"
                                             "disable-image-block-public-access --region us-west-2"):
        build(emu)
    assert not emu.recorder.ops("CreateSecurityGroup") and emu.leaks() == {}


def test_base_ami_override_and_architecture_check(emu):
    result = build(emu, base_ami=emu.bases["rhel9_old"])
    assert emu.recorder.ops("RunInstances")[0].params["ImageId"] == emu.bases["rhel9_old"]
    assert manifest.find_build(manifest.load(result.manifest_path))["custom_data"]["base_ami"] == emu.bases["rhel9_old"]
    with pytest.raises(PreflightError, match="is arm64, recipe rhel9-x86_64 builds x86_64"):
        build(emu, base_ami=emu.bases["rhel9_arm"], now=lambda: FIXED_NOW)


def test_force_keeps_the_old_image_when_the_new_bake_fails(emu):
    first = build(emu, now=lambda: FIXED_NOW)
    emu.guest.mode = "fail"
    with pytest.raises(GuestFailed):
        build(emu, now=lambda: FIXED_NOW, force=True)
    assert emu.ec2.describe_images(ImageIds=[first.image_id])["Images"][0]["State"] == "available"
    assert not emu.recorder.ops("DeregisterImage")


def test_base_ami_of_another_account_needs_allow_foreign_base(emu):
    with pytest.raises(PreflightError, match="belongs to account 999999999999, not 309956199498.*--allow-foreign-base"):
        build(emu, base_ami=emu.bases["impostor"])
    assert not emu.recorder.ops("RunInstances") and emu.leaks() == {}
    result = build(emu, base_ami=emu.bases["impostor"], allow_foreign_base=True)
    assert emu.recorder.ops("RunInstances")[0].params["ImageId"] == emu.bases["impostor"] and result.image_id


def test_parallel_builds_with_prefixed_logs(emu, capsys):
    recipes = [load_recipe("rhel9-x86_64"), load_recipe("rhel9-arm64")]
    results = build_recipes(emu.aws, recipes, emu.options())
    assert {r.recipe for r in results} == {"rhel9-x86_64", "rhel9-arm64"}
    arm = next(r for r in results if r.recipe == "rhel9-arm64")
    arm_run = [c for c in emu.recorder.ops("RunInstances") if c.params["InstanceType"] == "t4g.large"]
    assert arm_run and arm_run[0].params["ImageId"] == emu.bases["rhel9_arm"]
    assert (emu.tmp_path / "manifests" / "rhel9-arm64.json").exists() and arm.image_id
    err = capsys.readouterr().err.splitlines()
    for name in ("rhel9-x86_64", "rhel9-arm64"):
        assert any(f"[{name}] done in" in line for line in err)
    assert all("] [" in line or "[rhel9-" in line for line in err if "builder" in line)


def test_ctrl_c_during_parallel_builds_undoes_every_build(emu):
    import os
    import signal
    import threading

    from condor_seed.emulator.aws import backend

    emu.guest.mode = "hang"

    def interrupt_when_both_bake():
        deadline = time.monotonic() + 30
        while sum(i.state == "running" for i in backend().all_instances()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: KeyboardInterrupt in the main thread

    threading.Thread(target=interrupt_when_both_bake, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        build_recipes(emu.aws, [load_recipe("rhel9-x86_64"), load_recipe("rhel9-arm64")], emu.options())
    assert len(emu.recorder.ops("RunInstances")) == 2
    assert emu.leaks() == {}
