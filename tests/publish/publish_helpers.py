"""Helpers for the publish / prune / list tests, against the emulator on 127.0.0.1: seeds as a build
leaves them, manifests, slow copies. `Emulated` (the session hooks) lives in condor_seed.emulator.account.
"""
from __future__ import annotations

import datetime as dt
import sys
import threading
from pathlib import Path

from condor_seed import manifest
from condor_seed.aws.session import Aws
from condor_seed.aws.tags import BUILD_ID_TAG, RECIPE_TAG, SMOKE_TEST_TAG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))  # the AWS build tests' helpers
from iam_policy import disallowed  # noqa: E402

from condor_seed.emulator.account import Emulated, is_mutating  # noqa: E402

__all__ = ["Emulated", "disallowed", "is_mutating"]

RECIPE = "rhel9-x86_64"  # regions us-east-1, us-east-2, us-west-2; keep 3; prune; public
REGIONS = ["us-east-1", "us-east-2", "us-west-2"]
PARAMETER = "/htcondor/seed/rhel9/x86_64/latest"


def set_creation_date(region: str, image_id: str, when: dt.datetime) -> None:
    """Test setup only: the emulator stamps images with 'now'; rotation needs distinct ages."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    ec2_backends[DEFAULT_ACCOUNT_ID][region].amis[image_id].creation_date = when


def make_seed(aws: Aws, *, region="us-east-1", build_id="build-1", recipe=RECIPE, name=None,
              created: dt.datetime | None = None, public=False, smoke_test: str | None = "passed") -> str:
    """A baked seed image as build and smoke test leave it: from a stopped instance, tagged with recipe,
    build and the smoke test's result."""
    ec2 = aws.ec2(region)
    base = ec2.register_image(Name=f"base-{build_id}", RootDeviceName="/dev/sda1",
                              BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    image_id = ec2.create_image(
        InstanceId=instance["InstanceId"], Name=name or f"htcondor-seed-{recipe}-{build_id}",
        TagSpecifications=[{"ResourceType": "image", "Tags": [
            {"Key": RECIPE_TAG, "Value": recipe}, {"Key": BUILD_ID_TAG, "Value": build_id}]
            + ([{"Key": SMOKE_TEST_TAG, "Value": smoke_test}] if smoke_test else [])}],
    )["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    ec2.deregister_image(ImageId=base)
    if created:
        set_creation_date(region, image_id, created)
    if public:
        ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    return image_id


def write_manifest(directory, image_id: str, *, region="us-east-1", build_id="build-1", recipe=RECIPE,
                   secret_scan="passed", smoke_test="passed", encrypted="false", build_time=None):
    path = manifest.path_for(recipe, directory)
    build = manifest.new_build(
        recipe=recipe, build_id=build_id, region_amis={region: image_id}, build_time=build_time,
        custom_data={"recipe": recipe, "build_id": build_id, "secret_scan": secret_scan,
                     "smoke_test": smoke_test, "encrypted": encrypted},
    )
    manifest.append_build(path, build)
    return path


class SlowCopies:
    """Test setup only: copies start `pending` and turn `available` (or `failed`) after `seconds`, as
    on AWS, where a cross-region copy takes minutes; the emulator makes them available at once."""

    def __init__(self, monkeypatch, seconds: float, fail: bool = False):
        from moto.ec2.models.amis import AmiBackend

        original = AmiBackend.copy_image
        self.timers: list[threading.Timer] = []

        def copy_image(backend_self, *args, **kwargs):
            ami = original(backend_self, *args, **kwargs)
            ami.state = "pending"
            timer = threading.Timer(seconds, self._flip, args=(ami, fail))
            self.timers.append(timer)
            timer.start()
            return ami

        monkeypatch.setattr(AmiBackend, "copy_image", copy_image)

    @staticmethod
    def _flip(ami, fail: bool) -> None:
        ami.state = "failed" if fail else "available"
        if fail:
            ami.state_reason = {"Code": "Client.CopyFailed", "Message": "injected: the copy failed"}
