"""`invoke smoke-test --region R --ami ID`: boot the new image and require the seed's console markers.

The instance runs as a user would run the seed (IMDSv2 required, no key pair, no inbound rule, no
instance profile); the test passes when the first-boot step made this instance's pool secrets
(`CONDOR-SEED-FIRST-BOOT:`), the boot script reported (`CONDOR-SEED-BOOT:`) and the
collector, negotiator and schedd are up (`CONDOR-SEED-READY: collector negotiator schedd up`).
The instance and its security group are removed on every exit path.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import manifest
from ..errors import PreflightError
from ..log import reporter
from ..pipeline import Pipeline, Step, sigterm_as_interrupt
from ..render import MARKERS
from . import images, instances
from .lifecycle import InstanceLifecycle, LaunchSpec
from .build import new_build_id, utcnow
from .preflight import check_default_vpc, identity_and_region
from .session import Aws
from .tags import (BUILD_ID_TAG, EXPIRES_TAG, NAME_TAG, RECIPE_TAG, ROLE_TAG, SMOKE_TEST_TAG, tag_dict, utc_iso)
from .waiters import DEFAULT_POLL_INTERVAL, REPORT_EVERY, Poller, WaitTimeout, describe_image, fmt_seconds

READY_LINE = f"{MARKERS['ready']} collector negotiator schedd up"
DEFAULT_SMOKE_TIMEOUT = 15 * 60.0
INSTANCE_TYPES = {"x86_64": "t3.large", "arm64": "t4g.large"}


class SmokeFailed(instances.GuestFailed):
    """The seed did not come up as it should."""


@dataclass
class SmokeResult:
    region: str
    image_id: str
    instance_id: str
    seconds: float
    console: str
    image_tags: dict[str, str] = field(default_factory=dict)

    ours = property(lambda self: bool(self.image_tags.get(BUILD_ID_TAG) and self.image_tags.get(RECIPE_TAG)))


def smoke_verdict(text: str) -> tuple[bool | None, str]:
    """(True, line) when booted and ready; (False, line) on a reported failure; (None, "") meanwhile."""
    lines = [line.strip() for line in (text or "").splitlines()]
    for line in lines:
        if any(line.startswith(f"{marker} FAILED") for marker in MARKERS.values()):
            return False, line
    booted = any(line.startswith(MARKERS["boot"]) for line in lines)
    # the instance's own pool secrets were made: without them no worker could ever join
    secrets_made = any(line.startswith(MARKERS["first_boot"]) for line in lines)
    if booted and secrets_made and READY_LINE in lines:
        return True, READY_LINE
    missing = [name for name, seen in (("first-boot", secrets_made), ("boot", booted)) if not seen]
    return None, f"no {' or '.join(missing)} marker yet" if missing else "markers seen, daemons not up yet"


@dataclass
class SmokeTest:
    aws: Aws
    region: str
    image_id: str
    report: Callable[[str], None]
    instance_type: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = DEFAULT_SMOKE_TIMEOUT
    report_every: float = REPORT_EVERY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = utcnow
    ec2: object = field(init=False)
    run_id: str = field(init=False)
    poller: Poller = field(init=False)
    instance: InstanceLifecycle = field(init=False)
    image: dict = field(default_factory=dict)
    console: str = ""

    def __post_init__(self):
        self.ec2 = self.aws.ec2(self.region)
        self.run_id = f"smoke-{new_build_id(self.now())}"
        self.poller = Poller(interval=self.poll_interval, timeout=self.timeout, sleep=self.sleep, clock=self.clock,
                             report=self.report, report_every=self.report_every)
        self.instance = InstanceLifecycle(
            self.ec2, self.run_id, role="smoke-test instance", poller=self.poller, report=self.report,
            tags=self.tags, group_description=f"condor-seed smoke test of {self.image_id}: no inbound rules")

    instance_id = property(lambda self: self.instance.instance_id)

    def tags(self) -> dict[str, str]:
        recipe = tag_dict(self.image.get("Tags")).get(RECIPE_TAG, "unknown")
        return {
            NAME_TAG: f"condor-seed smoke test {self.image_id}",
            RECIPE_TAG: recipe,
            BUILD_ID_TAG: self.run_id,
            ROLE_TAG: "smoke-test",
            EXPIRES_TAG: utc_iso(self.now() + dt.timedelta(seconds=self.timeout + 3600)),
        }

    def preflight(self):
        identity = identity_and_region(self.aws, self.region)
        self.report(f"preflight: AWS account {identity['Account']}, region {self.region}")
        check_default_vpc(self.aws, self.region)
        image = describe_image(self.ec2, self.image_id)
        if image is None or image.get("State") != "available":
            state = image.get("State") if image else "not found"
            raise PreflightError(f"AMI {self.image_id} in {self.region}: {state} (need an available image)")
        self.image = image
        arch = image.get("Architecture", "x86_64")
        self.instance_type = self.instance_type or INSTANCE_TYPES.get(arch, "t3.large")

    def wait_ready(self):
        console = instances.Console(self.ec2, self.instance_id)

        def probe():
            state, reason = instances.instance_state(self.ec2, self.instance_id)
            if state not in ("pending", "running"):
                raise SmokeFailed(f"smoke-test instance {self.instance_id} is {state}: {reason}; console tail: "
                                  f"{instances.console_tail(self.console)}")
            if state == "pending":
                return False, "instance pending", None
            self.console = console.read()
            ok, line = smoke_verdict(self.console)
            if ok is False:
                raise SmokeFailed(f"the seed reported a failure: {line}; console tail: "
                                  f"{instances.console_tail(self.console)}")
            return bool(ok), line, None

        try:
            self.poller.until(f"the seed on {self.instance_id} to report its daemons up", probe)
        except WaitTimeout as exc:
            raise SmokeFailed(f"{exc}; console tail: {instances.console_tail(self.console)}") from None
        self.report(f"seed is up: {READY_LINE!r}")

    def boot_and_check(self) -> SmokeResult:
        """Boot the image as a user would and require the seed's markers; remove the instance on every path."""
        start = self.clock()
        with sigterm_as_interrupt():
            Pipeline(report=self.report).run([
                Step("preflight", self.preflight),
                *self.instance.steps(
                    lambda: LaunchSpec(self.image_id, self.instance_type, client_token=f"condor-seed-{self.run_id}"),
                    wait=Step("wait for the seed", self.wait_ready)),
            ])
        seconds = self.clock() - start
        self.report(f"smoke test passed in {fmt_seconds(seconds)}")
        return SmokeResult(self.region, self.image_id, self.instance_id, seconds, self.console,
                           tag_dict(self.image.get("Tags")))


def smoke_test(aws: Aws, region: str, image_id: str, report: Callable[[str], None] | None = None,
               **options) -> SmokeResult:
    report = report or reporter(f"[smoke {image_id}] ")
    return SmokeTest(aws, region, image_id, report, **options).boot_and_check()


def record_result(ec2, image_id: str, result: str) -> None:
    """Tag the image with its smoke test's result (`passed` | `failed`): unlike a CI run's manifest, the
    tag outlives the run (nightly resumes the publish of a built, smoke-tested image from it)."""
    images.tag_resources(ec2, [image_id], {SMOKE_TEST_TAG: result})


def smoke_test_and_record(aws: Aws, region: str, image_id: str, *, build: dict | None = None,
                          manifest_path: Path | None = None, discard_failed: bool = False,
                          report: Callable[[str], None] | None = None, **options) -> SmokeResult:
    """Smoke-test an image and record the verdict where it is kept: the build's manifest entry (the
    `build` object, and its file when given) and, for our own images, the image's tag (which outlives
    a CI run's manifest). `discard_failed`: remove an image that failed (it would never be published)."""
    report = report or reporter(f"[smoke {image_id}] ")

    def record(verdict: str) -> None:
        if build is not None:
            build.setdefault("custom_data", {})["smoke_test"] = verdict
            if manifest_path:
                manifest.set_result(manifest_path, build.get("packer_run_uuid"), "smoke_test", verdict)
                report(f"recorded smoke_test={verdict} in {manifest_path}")

    try:
        result = smoke_test(aws, region, image_id, report=report, **options)
    except BaseException:
        record("failed")
        if discard_failed:
            _discard(aws.ec2(region), image_id, report)
        raise
    record("passed")
    if result.ours:
        try:
            record_result(aws.ec2(region), image_id, "passed")
            report(f"tagged {image_id} {SMOKE_TEST_TAG}=passed")
        except Exception as exc:  # noqa: BLE001 - the verdict stands; without the tag a later nightly rebuilds
            report(f"tagging {image_id} {SMOKE_TEST_TAG}=passed failed ({exc})")
    return result


def _discard(ec2, image_id: str, report: Callable[[str], None]) -> None:
    try:
        removed = images.delete_image(ec2, image_id)
        report(f"smoke test failed: removed {', '.join(removed)}")
    except Exception as exc:  # noqa: BLE001 - the smoke failure is what must be said
        report(f"smoke test failed; removing {image_id} failed too ({exc}): `invoke prune` removes it later")
