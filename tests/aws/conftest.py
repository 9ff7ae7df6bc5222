"""Fixtures for the AWS build tests: the emulator with a guest, image delays, emulator gaps, and a
recorder whose operations must all be allowed by iam/builder-policy.json (checked at teardown)."""
from __future__ import annotations

from dataclasses import dataclass, field

import boto3
import pytest

from condor_seed.emulator.aws import (EmulatorGaps, GuestSimulator, ImageDelays, Recorder, add_rhel_images, backend,
                          patch_console_output)
from condor_seed.aws.build import BuildOptions
from condor_seed.aws.session import Aws
from iam_policy import SESSION_ACTIONS, disallowed


@dataclass
class Emu:
    endpoint: str
    aws: Aws  # what the code under test uses: recorded, gaps answered
    ec2: object  # what tests arrange and check with: not recorded
    recorder: Recorder
    gaps: EmulatorGaps
    guest: GuestSimulator
    images: ImageDelays
    bases: dict[str, str]
    tmp_path: object
    baseline: dict[str, set] = field(default_factory=dict)

    def options(self, **overrides) -> BuildOptions:
        values = dict(region="us-east-1", poll_interval=0.02, timeout=20.0, console_every=0.05, report_every=0.5,
                      manifest_dir=self.tmp_path / "manifests")
        values.update(overrides)
        return BuildOptions(**values)

    def snapshot_state(self) -> dict[str, set]:
        ec2 = self.ec2
        return {
            "instances": {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                          if i["State"]["Name"] != "terminated"},
            "security_groups": {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
                                if g["GroupName"] != "default"},
            "images": {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]},
            "snapshots": {s["SnapshotId"] for s in ec2.describe_snapshots()["Snapshots"]},
            "volumes": {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]},
        }

    def leaks(self) -> dict[str, set]:
        """What exists now and did not before the test (listed through the API)."""
        now = self.snapshot_state()
        return {kind: ids - self.baseline.get(kind, set()) for kind, ids in now.items() if ids - self.baseline.get(kind, set())}


@pytest.fixture
def emu(aws_env, monkeypatch, tmp_path):
    bases = add_rhel_images("us-east-1")
    session = boto3.Session(region_name="us-east-1")
    recorder = Recorder(session)
    gaps = EmulatorGaps(session)
    guest = GuestSimulator(aws_env).start()
    patch_console_output(monkeypatch, guest.console)
    delays = ImageDelays().install(monkeypatch)
    em = Emu(aws_env, Aws(session=session), boto3.client("ec2", region_name="us-east-1"), recorder, gaps, guest,
             delays, bases, tmp_path)
    em.baseline = em.snapshot_state()
    yield em
    guest.stop()
    SESSION_ACTIONS.update(recorder.actions())
    bad = disallowed(recorder.actions())
    assert not bad, f"iam/builder-policy.json does not allow operations this test made: {bad}"


@pytest.fixture
def ec2_backend(aws_env):
    return backend
