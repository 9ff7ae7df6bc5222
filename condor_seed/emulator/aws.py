"""Test-only helpers around the moto server that runs in this process (see tests/conftest.py).

- `GuestSimulator` plays the EC2 guest: it reads each new instance's user data through the API,
  checks it is our bake script, runs the script's own leak check (its real prelude and scan section,
  with bash) over the guest's files (`planted`, in a temporary folder standing for `/`), writes
  console output with its package report (`sample_packages`) and the marker (or a failure) and
  powers the instance off (stops it in the moto backend), like the bake script's `systemctl
  poweroff` would.
  An instance launched from one of our images without user data plays the seed booting.
- `tag_snapshots_at_creation` fills an emulator gap: moto 5.2.5 answers `create_image` with a
  `snapshot` TagSpecification with HTTP 500; the patched backend takes that spec out before moto
  sees it and puts its tags on the image's new snapshot itself, as AWS does.
- `ImageDelays` makes images created by `create_image` start `pending` (or end `failed` with a
  StateReason), the way AWS takes minutes to snapshot.
- `Recorder` records every API operation (and its parameters) made through a boto3 Session.
- `EmulatorGaps` answers, on the same Session, the calls moto does not implement, checking each
  canned response against botocore's service model as Stubber does.
- `Throttle` injects `RequestLimitExceeded` (HTTP 503) responses with a `before-send` hook.
Production code knows none of this: tests hand it a boto3 Session and a sleep function.
"""
from __future__ import annotations

import base64
import gzip
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import boto3
from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

from condor_seed.aws.tags import RECIPE_TAG
from condor_seed.packages import Package, PackageList, report_lines
from condor_seed.render import MARKERS

ACCOUNT = "123456789012"
RED_HAT = "309956199498"


def backend(region: str = "us-east-1"):
    from moto.backends import get_backend

    return get_backend("ec2")[ACCOUNT][region]


# ------------------------------------------------------------------ base images
def add_image(region: str, image_id: str, name: str, *, arch: str = "x86_64", date: str = "2024-06-05",
              owner: str = RED_HAT) -> str:
    import datetime as dt

    from moto.ec2.models.amis import Ami

    be = backend(region)
    be.amis[image_id] = Ami(be, image_id, name=name, owner_id=owner, architecture=arch,
                            creation_date=dt.datetime.fromisoformat(date), root_device_name="/dev/sda1")
    return image_id


RHEL_IMAGES = [  # key, id, name, architecture, date, owner
    ("rhel9_old", "ami-0aaa00000000rhel9", "RHEL-9.3.0_HVM-20231101-x86_64-5-Hourly2-GP3", "x86_64", "2023-11-01", RED_HAT),
    ("rhel9", "ami-0bbb00000000rhel9", "RHEL-9.4.0_HVM-20240605-x86_64-82-Hourly2-GP3", "x86_64", "2024-06-05", RED_HAT),
    ("rhel9_arm", "ami-0ccc0000000arm64", "RHEL-9.4.0_HVM-20240605-arm64-82-Hourly2-GP3", "arm64", "2024-06-06", RED_HAT),
    ("rhel8", "ami-0ddd00000000rhel8", "RHEL-8.10.0_HVM-20240601-x86_64-1-Hourly2-GP3", "x86_64", "2024-06-01", RED_HAT),
    ("rhel9_gp2", "ami-0eee000000000gp2", "RHEL-9.4.0_HVM-20240701-x86_64-82-Hourly2-GP2", "x86_64", "2024-07-01", RED_HAT),
    ("impostor", "ami-0fff00000impostor", "RHEL-9.9.0_HVM-20250101-x86_64-1-Hourly2-GP3", "x86_64", "2025-01-01",
     "999999999999"),
]


def add_rhel_images(region: str = "us-east-1") -> dict[str, str]:
    """A small Red Hat catalogue: the newest matching image must win (not the gp2 one, not the impostor's)."""
    return {key: add_image(region, image_id, name, arch=arch, date=date, owner=owner)
            for key, image_id, name, arch, date, owner in RHEL_IMAGES}


# ------------------------------------------------------------------ subprocess runs
def tag_snapshots_at_creation() -> None:
    """Patch the in-process emulator (once, for the whole server): `create_image` tags the image's
    snapshot from a `snapshot` TagSpecification instead of failing (see the module docstring)."""
    from moto.ec2.models.amis import AmiBackend

    original = AmiBackend.create_image
    if getattr(original, "tags_snapshots", False):
        return

    def create_image(backend_self, instance_id, name, description, tag_specifications):
        snapshot_tags = [tag for spec in tag_specifications if spec["ResourceType"] == "snapshot" for tag in spec["Tags"]]
        others = [spec for spec in tag_specifications if spec["ResourceType"] != "snapshot"]
        ami = original(backend_self, instance_id, name, description, tag_specifications=others)
        for tag in snapshot_tags:
            ami.ebs_snapshot.add_tag(tag["Key"], tag["Value"])
        return ami

    create_image.tags_snapshots = True
    AmiBackend.create_image = create_image


def private_recipe(folder, project) -> Path:
    """A copy of rhel9-x86_64 that is not published: a subprocess needs no image block public access
    answer (moto lacks the call, and the test's hooks do not reach another process)."""
    import shutil
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("defaults.yaml", "rhel9-x86_64.yaml"):
        shutil.copy(Path(project) / "recipes" / name, folder)
    (folder / "rhel9-private.yaml").write_text(
        "extends: rhel9-x86_64\ndescription: private test seed\nregions: [us-east-1]\n"
        "publish: {public: false, keep: 1, prune: false}\n")
    return folder / "rhel9-private.yaml"


def sigterm_during_bake(proc, region: str = "us-east-1", wait: float = 60.0) -> tuple[str, str]:
    """Send SIGTERM to `proc` once a builder runs (inside the wait for the guest); return its output."""
    import signal

    deadline = time.monotonic() + wait
    while not any(i.state == "running" for i in backend(region).all_instances()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=wait)


# ------------------------------------------------------------------ guest simulator
def decode_user_data(value: str) -> str:
    raw = base64.b64decode(value)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode()


def sample_packages(condor_version: str, errata: int = 0, count: int = 600) -> PackageList:
    """A RHEL-sized package list: `count` packages plus condor; the first `errata` ones carry an update."""
    packages = [Package(f"sample-package-{i:03d}", "0", f"{1 + i % 7}.{i % 13}.{i % 5}",
                        f"{2 if i < errata else 1}.el9", "noarch" if i % 3 == 0 else "x86_64") for i in range(count)]
    packages.append(Package("condor", "0", condor_version, "1.el9", "x86_64"))
    return PackageList("rpm", tuple(sorted(packages)))


@dataclass
class GuestSimulator:
    """mode: success | fail | hang (bake); seed: ready | fail | silent | no-first-boot (smoke test;
    no-first-boot: the secrets step died without its marker, the daemons still came up).
    `errata`: how many packages of the guest's list carry an update (RHEL errata no one outside AWS sees)."""

    endpoint: str
    region: str = "us-east-1"
    mode: str = "success"
    seed: str = "ready"
    bake_seconds: float = 0.05
    boot_seconds: float = 0.05
    htcondor_version: str = "24.0.5"
    errata: int = 0
    planted: dict[str, bytes] = field(default_factory=dict)  # guest files (path -> content) the bake leaves
    console: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # instance id -> what it was judged to be
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, instance, what)

    def __post_init__(self):
        self._stop = threading.Event()
        self._client = boto3.client("ec2", region_name=self.region, endpoint_url=self.endpoint)  # not recorded
        self._thread = threading.Thread(target=self._loop, name="guest-simulator", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _loop(self):
        while not self._stop.wait(0.01):
            for instance in list(backend(self.region).all_instances()):
                if instance.id not in self.seen and instance.state == "running":
                    self.seen[instance.id] = "starting"
                    threading.Thread(target=self._play, args=(instance,), daemon=True).start()

    def _play(self, instance):
        attr = self._client.describe_instance_attribute(InstanceId=instance.id, Attribute="userData")
        encoded = attr.get("UserData", {}).get("Value")
        if encoded:
            self._bake(instance, decode_user_data(encoded))
        else:
            self._boot(instance)

    def _bake(self, instance, script: str):
        marker = MARKERS["bake"]
        ok = script.startswith("#!/bin/bash") and f'MARKER="{marker}"' in script and "poweroff" in script
        match = re.search(r'"\$MARKER SUCCESS recipe=(\S+) scan=clean"', script)
        if not ok or not match:
            self.seen[instance.id] = "not a bake script"
            self.console[instance.id] = "cloud-init: user data is not a condor-seed bake script\n"
            return
        recipe = match.group(1)
        self.seen[instance.id] = f"bake {recipe} ({self.mode})"
        self.console[instance.id] = f"cloud-init: running user data\n{marker} step: install HTCondor\n"
        if self.mode == "hang":
            return
        time.sleep(self.bake_seconds)
        if self.mode == "fail":  # the ERR trap prints FAILED and exits; nothing powers off
            self.console[instance.id] += f"{marker} FAILED recipe={recipe} line=42 exit=1\n"
            self._event(instance, "bake failed")
            return
        self.console[instance.id] += f"{marker} htcondor-version={self.htcondor_version}\n"
        scanned = self._leak_check(script)
        self.console[instance.id] += scanned.stdout
        if scanned.returncode != 0:  # the script printed FAILED and exited; nothing powers off
            self._event(instance, "bake failed")
            return
        report = report_lines(sample_packages(self.htcondor_version, self.errata), marker)
        self.console[instance.id] += ("".join(line + "\n" for line in report)
                                      + f"{marker} SUCCESS recipe={recipe} scan=clean\n")
        self.power_off(instance)

    def _leak_check(self, script: str) -> subprocess.CompletedProcess:
        """Run the bake script's prelude and its scan step for real, over the planted files."""
        prelude = script[:script.index('\nstep "') + 1]  # up to the first step
        start = script.index('step "scan for anything')
        scan = script[start:script.index("\nfi\n", start) + 4]  # the check and its verdict
        if "seed_leftovers /)" not in scan:  # never let a script's check loose on this machine's /
            return subprocess.CompletedProcess([], 1, "guest: the bake script has no leak check over /\n", "")
        with tempfile.TemporaryDirectory(prefix="guest-root-") as root:
            for rel, content in self.planted.items():
                path = f"{root}/{rel.lstrip('/')}"
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(content)
            guest = prelude + scan.replace("seed_leftovers /)", 'seed_leftovers "$GUEST_ROOT")')
            run = subprocess.run(["bash", "-c", guest], capture_output=True, text=True, timeout=60,
                                 env={"PATH": "/usr/bin:/bin", "GUEST_ROOT": root, "CONDOR_SEED_POWEROFF": "no"})
        run.stdout = run.stdout.replace(root, "")  # paths as the guest sees them
        return run

    def _boot(self, instance):
        image = backend(self.region).amis.get(instance.image_id)
        tags = {t["key"]: t["value"] for t in (image.get_tags() if image else [])}
        if RECIPE_TAG not in tags:
            self.seen[instance.id] = "unknown image"
            return
        self.seen[instance.id] = f"seed ({self.seed})"
        if self.seed == "silent":
            return
        time.sleep(self.boot_seconds)
        first_boot = "" if self.seed == "no-first-boot" else f"{MARKERS['first_boot']} created pool password\n"
        self.console[instance.id] = first_boot + f"{MARKERS['boot']} public-ip=203.0.113.7 TCP_FORWARDING_HOST set\n"
        time.sleep(self.boot_seconds)
        line = "FAILED: daemons not up in time" if self.seed == "fail" else "collector negotiator schedd up"
        self.console[instance.id] += f"{MARKERS['ready']} {line}\n"
        self._event(instance, "seed " + self.seed)

    def power_off(self, instance):
        from moto.ec2.models.instances import StateReason

        self._event(instance, "stopped")  # first: the builder may see the new state at once
        instance.stop()
        instance.state_reason = StateReason("Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                                            "Client.InstanceInitiatedShutdown")

    def _event(self, instance, what: str):
        self.events.append((time.monotonic(), instance.id, what))

    def event_time(self, what: str) -> float | None:
        return next((t for t, _, w in self.events if w == what), None)


def patch_console_output(monkeypatch, console: dict[str, str]):
    """moto returns a fixed sample console; serve the simulator's text instead."""
    from moto.ec2.responses import general

    original = general.General.get_console_output

    def get_console_output(self):
        instance_id = self._get_param("InstanceId")
        if instance_id not in console:
            return original(self)
        from moto.core.responses import ActionResult
        from moto.core.utils import utcnow
        from moto.ec2.utils import Base64EncodedString

        instance = self.ec2_backend.get_instance(instance_id)
        return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(),
                             "Output": Base64EncodedString.from_raw_string(console[instance_id])})

    monkeypatch.setattr(general.General, "get_console_output", get_console_output)


# ------------------------------------------------------------------ image delays
@dataclass
class ImageDelays:
    """New images start `pending` and become available (or `failed`) after `seconds`."""

    seconds: float = 0.0
    fail_reason: tuple[str, str] | None = None  # (code, message) -> the image ends `failed`
    created: list[str] = field(default_factory=list)
    flipped: dict[str, float] = field(default_factory=dict)  # image id -> monotonic time of the flip

    def install(self, monkeypatch):
        from moto.ec2.models.amis import AmiBackend

        original = AmiBackend.create_image
        delays = self

        def create_image(backend_self, *args, **kwargs):
            ami = original(backend_self, *args, **kwargs)
            delays.created.append(ami.id)
            if delays.seconds or delays.fail_reason:
                ami.state = "pending"
                threading.Timer(delays.seconds, delays._flip, args=(ami,)).start()
            return ami

        monkeypatch.setattr(AmiBackend, "create_image", create_image)
        return self

    def _flip(self, ami):
        self.flipped[ami.id] = time.monotonic()
        if self.fail_reason:
            ami.state = "failed"
            ami.state_reason = {"Code": self.fail_reason[0], "Message": self.fail_reason[1]}
        else:
            ami.state = "available"


# ------------------------------------------------------------------ recorder, gaps, throttling
@dataclass
class Call:
    service: str  # IAM prefix: ec2, sts, ssm
    operation: str
    params: dict
    region: str
    at: float = field(default_factory=time.monotonic)  # when the call was made

    @property
    def action(self) -> str:
        return f"{self.service}:{self.operation}"


class Recorder:
    """Every operation made through the Session, with its parameters (botocore event hook)."""

    def __init__(self, session: boto3.Session):
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        session.events.register("before-parameter-build", self._record)

    def _record(self, params, model, context=None, **kwargs):
        region = (context or {}).get("client_region", "")
        with self._lock:
            self.calls.append(Call(model.service_model.signing_name, model.name, dict(params), region))

    def ops(self, operation: str | None = None) -> list[Call]:
        return [c for c in self.calls if operation is None or c.operation == operation]

    def actions(self) -> set[str]:
        return {c.action for c in self.calls}

    def count(self) -> Counter:
        return Counter(c.operation for c in self.calls)


def _response(operation_model, parsed: dict, status: int = 200):
    report = ParamValidator().validate(parsed, operation_model.output_shape)
    if report.has_errors():
        raise AssertionError(f"canned {operation_model.name} response does not match the model: "
                             f"{report.generate_report()}")
    parsed = dict(parsed, ResponseMetadata={"HTTPStatusCode": status, "RequestId": "emulated"})
    return AWSResponse("https://emulated", status, {}, None), parsed


class EmulatorGaps:
    """Answers what moto lacks: image block public access, ImdsSupport readback, deprecation."""

    def __init__(self, session: boto3.Session):
        self.block_public_access: dict[str, str] = defaultdict(lambda: "unblocked")
        self.imds_support: dict[str, str] = {}
        self.answered = Counter()
        session.events.register("before-call.ec2", self._answer)
        session.events.register("before-parameter-build.ec2.ModifyImageAttribute", self._note_imds)

    def _note_imds(self, params, **kwargs):
        if "ImdsSupport" in params:  # moto accepts and drops it; remember it for the readback
            self.imds_support[params["ImageId"]] = params["ImdsSupport"]["Value"]

    def _answer(self, model, params, context=None, **kwargs):
        region = (context or {}).get("client_region", "us-east-1")
        body = params.get("body", {}) if isinstance(params, dict) else {}
        name = model.name
        if name == "GetImageBlockPublicAccessState":
            parsed = {"ImageBlockPublicAccessState": self.block_public_access[region]}
        elif name == "DescribeImageAttribute" and body.get("Attribute") == "imdsSupport":
            image_id = body["ImageId"]
            parsed = {"ImageId": image_id}
            if image_id in self.imds_support:
                parsed["ImdsSupport"] = {"Value": self.imds_support[image_id]}
        else:
            return None
        self.answered[name] += 1
        return _response(model, parsed)


class Throttle:
    """The first `times` calls of each named operation get HTTP 503 RequestLimitExceeded."""

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
            b'<Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>')

    def __init__(self, session: boto3.Session, operations: list[str], times: int = 1):
        self.left = {op: times for op in operations}
        self.injected = Counter()
        self._lock = threading.Lock()
        session.events.register("before-send.ec2", self._send)

    def _send(self, request, **kwargs):
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        match = re.search(r"(?:^|&)Action=(\w+)", body)
        operation = match.group(1) if match else ""
        with self._lock:
            if self.left.get(operation, 0) <= 0:
                return None
            self.left[operation] -= 1
            self.injected[operation] += 1
        return AWSResponse(request.url, 503, {"Content-Type": "text/xml"}, _Raw(self.BODY))


class _Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **kwargs):
        yield self.data
