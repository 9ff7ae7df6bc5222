"""aws/lifecycle.InstanceLifecycle against the emulator: the steps build and smoke test share, and the
`keep_running` form `invoke launch-seed` will use (the instance stays up on success, nothing is left
on failure). The guest is the emulator's instance: nothing runs inside it here."""
from __future__ import annotations

import pytest

from condor_seed.aws import tags as T
from condor_seed.aws.lifecycle import InstanceLifecycle, LaunchSpec
from condor_seed.aws.waiters import Poller
from condor_seed.pipeline import Pipeline, Step


def lifecycle(emu, run_id: str, lines: list[str]) -> InstanceLifecycle:
    return InstanceLifecycle(
        emu.aws.ec2("us-east-1"), run_id, role="seed", poller=Poller(interval=0.02, timeout=10.0),
        report=lines.append, tags=lambda: {T.BUILD_ID_TAG: run_id, T.ROLE_TAG: "seed", T.NAME_TAG: "test seed"},
        group_description=f"condor-seed test {run_id}: no inbound rules")


def spec(emu, run_id: str) -> LaunchSpec:
    return LaunchSpec(image_id=next(iter(emu.bases.values())), instance_type="t3.large",
                      client_token=f"condor-seed-{run_id}")


def test_keep_running_leaves_the_seed_up_and_its_closed_group(emu):
    lines: list[str] = []
    life = lifecycle(emu, "seed-keep", lines)
    steps = life.steps(spec(emu, "seed-keep"), wait=Step("wait", lambda: None), keep_running=True)
    assert [s.name for s in steps] == ["security group", "launch", "wait"]
    Pipeline(report=lines.append).run(steps)

    instance = emu.ec2.describe_instances(InstanceIds=[life.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] in ("pending", "running")
    assert instance["MetadataOptions"]["HttpTokens"] == "required" and "KeyName" not in instance
    group = emu.ec2.describe_security_groups(GroupIds=[life.group_id])["SecurityGroups"][0]
    assert group["IpPermissions"] == []
    left = emu.leaks()
    assert left["instances"] == {life.instance_id} and left["security_groups"] == {life.group_id}
    assert set(left) <= {"instances", "security_groups", "volumes"}  # and the instance's root volume

    life.terminate()  # what a later `invoke cleanup` or the user does
    life.delete_group()
    assert emu.leaks() == {}


def test_a_failure_after_the_launch_removes_instance_and_group(emu):
    lines: list[str] = []
    life = lifecycle(emu, "seed-fail", lines)

    def not_ready():
        raise RuntimeError("the seed never reported ready")

    with pytest.raises(RuntimeError, match="never reported ready"):
        Pipeline(report=lines.append).run(life.steps(spec(emu, "seed-fail"), wait=Step("wait", not_ready),
                                                     keep_running=True))
    assert emu.leaks() == {}
    assert any(line.startswith("terminated seed ") for line in lines)
    assert any(line.startswith("deleted security group ") for line in lines)
