"""One instance's life as pipeline steps: closed security group -> launch -> wait -> terminate -> delete group.

Shared by the builder (`aws/build`), the smoke test (`aws/smoke`) and `invoke launch-seed`. Use:

    life = InstanceLifecycle(ec2, run_id, role="seed", poller=poller, report=report,
                             tags=lambda: {...}, group_description="condor-seed seed ...: no inbound rules")
    launch = LaunchSpec(image_id=ami, instance_type="t3.large", client_token=f"condor-seed-{run_id}")
    Pipeline(report=report).run([
        Step("preflight", ...),
        *life.steps(launch, wait=Step("wait for the seed", wait_ready)),            # terminated at the end
        # or: *life.steps(launch, wait=..., keep_running=True)  # left running; undone only on failure
    ])

Every step undoes itself when a later one fails or the run is interrupted: the instance is
terminated and the group deleted, found by id or by the run's tag (`condor-seed:build-id` = `run_id`)
when a launch was cut short. By default the instance gets no key pair, no inbound rule and no
instance profile, and IMDSv2 is required; a launched seed asks for its own (`ingress`, and
`LaunchSpec.metadata_options`, `instance_profile_arn`, `key_name`). After `run`, `instance_id` and
`group_id` say what exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import botocore.exceptions

from ..pipeline import Step
from . import instances
from .waiters import Poller, error_code

PROFILE_PROPAGATION = 120.0  # seconds a new instance profile may take to become usable by EC2


@dataclass
class LaunchSpec:
    """What to boot; `user_data` (bytes, ≤ 16 KB) and a root volume are optional."""

    image_id: str
    instance_type: str
    client_token: str
    user_data: bytes | None = None
    root_device: str | None = None
    root_volume: dict | None = None  # {"size_gib": N, "volume_type": "gp3"}, with root_device
    metadata_options: dict = field(default_factory=lambda: dict(instances.IMDS_V2_ONLY))
    instance_profile_arn: str | None = None
    key_name: str | None = None


@dataclass
class InstanceLifecycle:
    ec2: object
    run_id: str  # tagged on everything (condor-seed:build-id): the undo and the janitor find it by that
    role: str  # in progress lines: "builder", "smoke-test instance", "seed"
    poller: Poller
    report: Callable[[str], None]
    tags: Callable[[], dict[str, str]]  # read when each resource is created
    group_description: str
    group_name: str = ""  # default: condor-seed-RUN_ID
    ingress: list[dict] = field(default_factory=list)  # IpPermissions; none for builders and smoke tests
    group_id: str | None = None
    instance_id: str | None = None

    def steps(self, launch: LaunchSpec | Callable[[], LaunchSpec], wait: Step, *, while_up: list[Step] = (),
              keep_running: bool = False, launch_name: str = "launch", note: str = "") -> list[Step]:
        """security group, launch, `wait`, `while_up` (e.g. create an image), then terminate and delete
        the group, unless `keep_running`. `launch` may be a function, called at launch time (when it
        depends on earlier steps, e.g. the base image). `note` ends the launch's progress line."""
        steps = [
            Step("security group", self.create_group, self.delete_group),
            Step(launch_name, lambda: self.launch(launch, note), self.terminate),
            wait,
            *while_up,
        ]
        if not keep_running:
            steps += [Step("terminate " + self.role.split()[0], self.terminate),
                      Step("delete security group", self.delete_group)]
        return steps

    def create_group(self) -> None:
        self.group_id = instances.create_security_group(
            self.ec2, self.group_name or f"condor-seed-{self.run_id}", self.group_description, self.tags())
        if self.ingress:
            self.ec2.authorize_security_group_ingress(GroupId=self.group_id, IpPermissions=self.ingress)
        self.report(f"security group {self.group_id} ({describe_ingress(self.ingress)})")

    def delete_group(self) -> None:
        for group_id in instances.delete_run_groups(self.ec2, self.run_id, self.group_id, self.poller):
            self.report(f"deleted security group {group_id}")
        self.group_id = None

    def launch(self, spec: LaunchSpec | Callable[[], LaunchSpec], note: str = "") -> None:
        spec = spec() if callable(spec) else spec

        def attempt():
            try:
                return True, "launched", instances.launch_instance(
                    self.ec2, image_id=spec.image_id, instance_type=spec.instance_type, group_id=self.group_id,
                    tags=self.tags(), client_token=spec.client_token, user_data=spec.user_data,
                    root_device=spec.root_device, root_volume=spec.root_volume,
                    metadata_options=spec.metadata_options, instance_profile_arn=spec.instance_profile_arn,
                    key_name=spec.key_name)
            except botocore.exceptions.ClientError as exc:  # IAM is eventually consistent
                if spec.instance_profile_arn and error_code(exc) == "InvalidParameterValue" \
                        and "iamInstanceProfile" in str(exc):
                    return False, "instance profile not yet visible to EC2", None
                raise

        self.instance_id = self.poller.until(f"EC2 to launch the {self.role}", attempt, timeout=PROFILE_PROPAGATION)
        self.report(f"{self.role} {self.instance_id} ({spec.instance_type}) launched from {spec.image_id}{note}")

    def terminate(self) -> None:
        ids = instances.terminate_run(self.ec2, self.run_id, self.instance_id, self.poller)
        if ids:
            self.report(f"terminated {self.role} {', '.join(ids)}")


def describe_ingress(rules: list[dict]) -> str:
    """`inbound: 9618 from 0.0.0.0/0, 22 from 203.0.113.7/32` (or `no inbound rules`)."""
    if not rules:
        return "no inbound rules"
    parts = []
    for rule in rules:
        sources = [r["CidrIp"] for r in rule.get("IpRanges", [])] + [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        parts.append(f"{rule['FromPort']} from {' '.join(sources)}")
    return "inbound: " + ", ".join(parts)
