"""Builder and smoke-test instances: a closed security group, a launch, the console, termination.

No SSH anywhere: the instance gets no key pair, its security group has no inbound rule and no
instance profile is attached. What happens inside is read from the serial console output.
"""
from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

from ..errors import SeedError
from .tags import build_filter, tag_specs
from .waiters import Poller, WaitTimeout, error_code, or_none, state_reason

CONSOLE_TAIL_LINES = 25
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


class GuestFailed(SeedError):
    """The guest reported a failure, vanished, or never finished."""


def console_tail(text: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    tail = [line for line in (text or "").splitlines() if line.strip()][-lines:]
    return " | ".join(tail) if tail else "(console output is empty)"


# ------------------------------------------------------------------ security group
def create_security_group(ec2, name: str, description: str, tags: dict[str, str]) -> str:
    """In the default VPC, with AWS's default egress (the bake downloads packages) and no inbound rule."""
    return ec2.create_security_group(
        GroupName=name, Description=description, TagSpecifications=tag_specs(tags, "security-group")
    )["GroupId"]


def find_security_groups(ec2, build_id: str) -> list[str]:
    groups = ec2.describe_security_groups(Filters=build_filter(build_id))["SecurityGroups"]
    return [group["GroupId"] for group in groups]


def delete_security_group(ec2, group_id: str, poller: Poller) -> None:
    """Retries while a terminating instance still holds the group (DependencyViolation)."""

    def probe():
        try:
            ec2.delete_security_group(GroupId=group_id)
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                return True, "gone", None
            if code == "DependencyViolation":
                return False, "still in use by an instance", None
            raise
        return True, "deleted", None

    poller.until(f"security group {group_id} to be deletable", probe)


# ------------------------------------------------------------------ instances
IMDS_V2_ONLY = {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1}


def launch_instance(ec2, *, image_id: str, instance_type: str, group_id: str, tags: dict[str, str],
                    client_token: str, user_data: bytes | None = None, root_device: str | None = None,
                    root_volume: dict | None = None, metadata_options: dict = IMDS_V2_ONLY,
                    instance_profile_arn: str | None = None, key_name: str | None = None) -> str:
    """Builder and smoke test: IMDSv2 only, no profile, no key. A launched seed passes its own."""
    params = dict(
        ImageId=image_id,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[group_id],
        MetadataOptions=dict(metadata_options),
        InstanceInitiatedShutdownBehavior="stop",
        ClientToken=client_token,
        TagSpecifications=tag_specs(tags, "instance", "volume"),
    )
    if user_data is not None:
        params["UserData"] = user_data
    if instance_profile_arn:
        params["IamInstanceProfile"] = {"Arn": instance_profile_arn}
    if key_name:
        params["KeyName"] = key_name
    if root_device and root_volume:
        params["BlockDeviceMappings"] = [{
            "DeviceName": root_device,
            "Ebs": {"VolumeSize": root_volume["size_gib"], "VolumeType": root_volume["volume_type"],
                    "DeleteOnTermination": True, "Encrypted": False},
        }]
    return ec2.run_instances(**params)["Instances"][0]["InstanceId"]


def describe_instance(ec2, instance_id: str) -> dict | None:
    reservations = or_none(lambda: ec2.describe_instances(InstanceIds=[instance_id])["Reservations"],
                           "InvalidInstanceID.NotFound")
    instances = [i for r in reservations or [] for i in r["Instances"]]
    return instances[0] if instances else None


def instance_state(ec2, instance_id: str) -> tuple[str, str]:
    """(state name, AWS's reason for it); a vanished instance reads as terminated."""
    instance = describe_instance(ec2, instance_id)
    if instance is None:
        return "terminated", "instance vanished"
    return instance["State"]["Name"], state_reason(instance)


def find_instances(ec2, build_id: str) -> list[str]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=build_filter(build_id) + [{"Name": "instance-state-name", "Values": LIVE_STATES}]
    )
    return [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]


def terminate_instances(ec2, instance_ids: list[str], poller: Poller) -> None:
    """Terminate and wait until terminated (a security group can only go after its instances)."""
    if not instance_ids:
        return
    try:
        ec2.terminate_instances(InstanceIds=instance_ids)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
    pending = list(instance_ids)

    def probe():
        states = {}
        for instance_id in pending:
            instance = describe_instance(ec2, instance_id)
            states[instance_id] = instance["State"]["Name"] if instance else "terminated"
        pending[:] = [i for i, state in states.items() if state != "terminated"]
        return not pending, ", ".join(f"{i} {s}" for i, s in states.items()), None

    poller.until(f"instance(s) {', '.join(instance_ids)} to terminate", probe)


# ------------------------------------------------------------------ undo by id and by tag
def terminate_run(ec2, run_id: str, known: str | None, poller: Poller) -> list[str]:
    """Terminate the run's instances: the one we know of and any found by tag (a launch cut short)."""
    ids = list(dict.fromkeys(([known] if known else []) + find_instances(ec2, run_id)))
    terminate_instances(ec2, ids, poller)
    return ids


def delete_run_groups(ec2, run_id: str, known: str | None, poller: Poller) -> list[str]:
    ids = list(dict.fromkeys(([known] if known else []) + find_security_groups(ec2, run_id)))
    for group_id in ids:
        delete_security_group(ec2, group_id, poller)
    return ids


# ------------------------------------------------------------------ console
class Console:
    """`get_console_output`, asking for the latest output where the instance type supports it."""

    def __init__(self, ec2, instance_id: str):
        self.ec2, self.instance_id, self.latest = ec2, instance_id, True

    def read(self) -> str:
        if self.latest:
            try:
                return self.ec2.get_console_output(InstanceId=self.instance_id, Latest=True).get("Output") or ""
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) not in ("UnsupportedOperation", "InvalidParameterValue", "InvalidParameter"):
                    raise
                self.latest = False
        return self.ec2.get_console_output(InstanceId=self.instance_id).get("Output") or ""


@dataclass
class ConsoleVerdict:
    ok: bool | None  # None: no verdict yet
    line: str = ""


def bake_verdict(text: str, marker: str, recipe: str) -> ConsoleVerdict:
    """The bake script's last `CONDOR-SEED-BAKE: SUCCESS|FAILED ...` line decides."""
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line.startswith(f"{marker} FAILED"):
            return ConsoleVerdict(False, line)
        if line.startswith(f"{marker} SUCCESS"):
            return ConsoleVerdict(line == f"{marker} SUCCESS recipe={recipe} scan=clean", line)
    return ConsoleVerdict(None)


def wait_for_bake(ec2, instance_id: str, *, marker: str, recipe: str, poller: Poller,
                  console_every: float = 30.0) -> str:
    """Wait for the guest to power off and require the success marker; return the console output.

    While the guest runs, the console is read every `console_every` seconds so a failure it
    reports ends the wait early (the bake script does not power off when it fails).
    """
    console = Console(ec2, instance_id)
    last_console = {"at": poller.clock(), "text": ""}

    def probe():
        state, reason = instance_state(ec2, instance_id)
        if state in ("terminated", "shutting-down"):
            raise GuestFailed(f"builder {instance_id} is {state} before the bake finished: {reason}; console: "
                              f"{console_tail(last_console['text'])}")
        if state == "stopped":
            return True, state, None
        if state == "running" and poller.clock() - last_console["at"] >= console_every:
            last_console.update(at=poller.clock(), text=console.read())
            verdict = bake_verdict(last_console["text"], marker, recipe)
            if verdict.ok is False:
                raise GuestFailed(f"bake failed on {instance_id}: {verdict.line}; console tail: "
                                  f"{console_tail(last_console['text'])}")
        return False, f"instance {state}", None

    try:
        poller.until(f"builder {instance_id} to bake and power off", probe)
    except WaitTimeout as exc:
        text = console.read()
        raise GuestFailed(f"{exc}; terminating the builder; console tail: {console_tail(text)}") from None

    def read_verdict():
        text = console.read()
        verdict = bake_verdict(text, marker, recipe)
        return verdict.ok is not None, "no result marker in the console yet", (verdict, text)

    try:  # after a stop AWS may take a moment to post the final console output
        verdict, text = poller.until(f"the console output of {instance_id}", read_verdict,
                                     timeout=min(poller.timeout, 600.0))
    except WaitTimeout:
        raise GuestFailed(f"builder {instance_id} powered off without a {marker} result line; console tail: "
                          f"{console_tail(console.read())}") from None
    if not verdict.ok:
        raise GuestFailed(f"bake failed on {instance_id}: {verdict.line}; console tail: {console_tail(text)}")
    return text
