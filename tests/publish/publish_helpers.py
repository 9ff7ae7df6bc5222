"""Helpers for the publish / prune / list tests, against the emulator on 127.0.0.1.

`Emulated` hooks the boto3 session the code under test uses:
- the AWS build tests' `Recorder` (tests/aws/aws_emulator.py, a `before-parameter-build` hook) records
  every call (region, operation, API parameters), so tests can assert what was asked for, in which
  order, that a dry run asked for no change at all, and that iam/builder-policy.json allows it all;
- a `before-call` hook answers the calls the emulator lacks (image block public access get/disable,
  EnableImageDeprecation) and injected failures. botocore has already validated the request
  against the real EC2 API model at that point, and every canned answer is validated against the
  model's output shape here (what botocore's Stubber does), so they cannot drift from the real API.
Everything else goes to the emulator unchanged.
"""
from __future__ import annotations

import datetime as dt
import sys
import threading
from collections import defaultdict
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse

from condor_seed import manifest
from condor_seed.aws.session import Aws
from condor_seed.aws.tags import BUILD_ID_TAG, RECIPE_TAG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))  # the AWS build tests' helpers
from aws_emulator import Call, Recorder, _response as validated_response  # noqa: E402
from iam_policy import disallowed  # noqa: E402

__all__ = ["disallowed"]

MUTATING = ("Create", "Copy", "Modify", "Put", "Delete", "Deregister", "Enable", "Disable", "Reset", "Register")
RECIPE = "rhel9-x86_64"  # regions us-east-1, us-east-2, us-west-2; keep 3; prune; public
REGIONS = ["us-east-1", "us-east-2", "us-west-2"]
PARAMETER = "/htcondor/seed/rhel9/x86_64/latest"


def is_mutating(call: Call) -> bool:
    return call.operation.startswith(MUTATING)


class Emulated:
    def __init__(self, session: boto3.Session):
        self.recorder = Recorder(session)
        self.calls: list[Call] = self.recorder.calls
        self.forgotten: set[str] = set()
        self.bpa: dict[str, str] = defaultdict(lambda: "unblocked")  # region -> state
        self.bpa_managed_by: dict[str, str] = defaultdict(lambda: "account")
        self.polls_until_unblocked = 1  # GetImageBlockPublicAccessState reads after a disable that still say blocked
        self.deprecations: dict[tuple[str, str], dt.datetime] = {}
        self.failures: list[tuple[str, str, object, str]] = []  # (region, operation, predicate, code)
        self._pending_unblock: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        session.events.register("before-parameter-build", self._current)
        session.events.register("before-call", self._answer)

    # ----------------------------------------------------------------- recording
    def _current(self, params, model, context, **_):
        self._local.call = Call(model.service_model.signing_name, model.name, dict(params),
                                context.get("client_region"))

    def forget(self) -> None:
        """Start a fresh record (the IAM check at teardown still sees what was forgotten)."""
        self.forgotten |= self.recorder.actions()
        self.calls.clear()

    def actions(self) -> set[str]:
        return self.forgotten | self.recorder.actions()

    def ops(self, region: str | None = None, operation: str | None = None) -> list[Call]:
        return [c for c in self.calls if (region is None or c.region == region)
                and (operation is None or c.operation == operation)]

    def mutating(self) -> list[Call]:
        return [c for c in self.calls if is_mutating(c)]

    def fail(self, region: str, operation: str, predicate=lambda params: True, code="InternalError") -> None:
        self.failures.append((region, operation, predicate, code))

    # ----------------------------------------------------------------- answers
    def _answer(self, model, context, **_):
        call: Call = self._local.call
        for region, operation, predicate, code in self.failures:
            if (region, operation) == (call.region, call.operation) and predicate(call.params):
                return _error(code, f"injected failure of {operation} in {region}")
        handler = getattr(self, f"_{call.operation}", None)
        if handler is None:
            return None  # the emulator answers
        return validated_response(model, handler(call))  # checked against the model's output shape

    def _GetImageBlockPublicAccessState(self, call: Call) -> dict:
        """mocked: the emulator lacks GetImageBlockPublicAccessState"""
        with self._lock:
            left = self._pending_unblock.get(call.region)
            if left is not None:
                if left <= 0:
                    self.bpa[call.region] = "unblocked"
                    del self._pending_unblock[call.region]
                else:
                    self._pending_unblock[call.region] = left - 1
        return {"ImageBlockPublicAccessState": self.bpa[call.region], "ManagedBy": self.bpa_managed_by[call.region]}

    def _DisableImageBlockPublicAccess(self, call: Call) -> dict:
        """mocked: the emulator lacks DisableImageBlockPublicAccess; like AWS, it takes a while to apply"""
        with self._lock:
            self._pending_unblock[call.region] = self.polls_until_unblocked
        return {"ImageBlockPublicAccessState": "unblocked"}

    def _EnableImageDeprecation(self, call: Call) -> dict:
        """mocked: the emulator lacks EnableImageDeprecation"""
        self.deprecations[(call.region, call.params["ImageId"])] = call.params["DeprecateAt"]
        return {"Return": True}


def _error(code: str, message: str):
    return AWSResponse("https://ec2.emulated", 400, {}, None), {
        "Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}


def set_creation_date(region: str, image_id: str, when: dt.datetime) -> None:
    """Test setup only: the emulator stamps images with 'now'; rotation needs distinct ages."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    ec2_backends[DEFAULT_ACCOUNT_ID][region].amis[image_id].creation_date = when


def make_seed(aws: Aws, *, region="us-east-1", build_id="build-1", recipe=RECIPE, name=None,
              created: dt.datetime | None = None, public=False) -> str:
    """A baked seed image as the build leaves it: from a stopped instance, tagged with recipe and build."""
    ec2 = aws.ec2(region)
    base = ec2.register_image(Name=f"base-{build_id}", RootDeviceName="/dev/sda1",
                              BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    image_id = ec2.create_image(
        InstanceId=instance["InstanceId"], Name=name or f"htcondor-seed-{recipe}-{build_id}",
        TagSpecifications=[{"ResourceType": "image", "Tags": [
            {"Key": RECIPE_TAG, "Value": recipe}, {"Key": BUILD_ID_TAG, "Value": build_id}]}],
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
