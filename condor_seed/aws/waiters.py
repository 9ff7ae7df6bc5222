"""Polling with a short interval, a total timeout, progress lines and the AWS state reason.

botocore's own waiters poll every 15 s and say little when they fail; a build waits on a guest and
an image for many minutes, so it polls here instead: every `interval` seconds (default 5), at most
`timeout` seconds in all, with a "still waiting" line every `report_every` seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import botocore.exceptions

from ..errors import SeedError

DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_TIMEOUT = 45 * 60.0
REPORT_EVERY = 30.0


class WaitTimeout(SeedError):
    """A resource did not reach the wanted state in time."""


class WaitFailed(SeedError):
    """A resource reached a state it will not come back from (with AWS's reason)."""


def fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def state_reason(resource: dict) -> str:
    reason = resource.get("StateReason") or {}
    text = ": ".join(v for v in (reason.get("Code"), reason.get("Message")) if v)
    return text or "no reason given by AWS"


@dataclass
class Poller:
    interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    report: Callable[[str], None] = field(default=lambda message: None)
    report_every: float = REPORT_EVERY

    def until(self, what: str, probe: Callable[[], tuple[bool, str, Any]], timeout: float | None = None) -> Any:
        """Call `probe()` -> (done, state, value) until done; return value. Raises WaitTimeout."""
        limit = self.timeout if timeout is None else timeout
        start = self.clock()
        next_report = start + self.report_every
        while True:
            polled = self.clock()
            done, state, value = probe()
            if done:
                return value
            now = self.clock()
            elapsed = now - start
            if elapsed >= limit:
                raise WaitTimeout(f"timed out after {fmt_seconds(elapsed)} waiting for {what} (last state: {state})")
            if now >= next_report:
                self.report(f"still waiting for {what}: {state}, {fmt_seconds(elapsed)} elapsed")
                next_report = now + self.report_every
            # A steady cadence: one poll every `interval`, however long the call took.
            self.sleep(max(0.0, min(self.interval - (now - polled), limit - elapsed)))


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def or_none(call: Callable[[], Any], *not_found: str) -> Any:
    """`call()`, or None when AWS answers with one of the `not_found` error codes."""
    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in not_found:
            return None
        raise


def describe_image(ec2, image_id: str) -> dict | None:
    images = or_none(lambda: ec2.describe_images(ImageIds=[image_id])["Images"], "InvalidAMIID.NotFound")
    return images[0] if images else None


def wait_image_exists(ec2, image_id: str, poller: Poller) -> dict:
    """`image_available` fails at once on NotFound right after create/copy: wait for existence first."""
    def probe():
        image = describe_image(ec2, image_id)
        return image is not None, "not visible yet" if image is None else f"state {image['State']}", image

    return poller.until(f"image {image_id} to exist", probe)


IMAGE_DEAD_STATES = ("failed", "invalid", "deregistered", "error", "disabled")


def wait_image_available(ec2, image_id: str, poller: Poller) -> dict:
    def probe():
        image = describe_image(ec2, image_id)
        if image is None:
            return False, "not visible", None
        if image["State"] in IMAGE_DEAD_STATES:
            raise WaitFailed(f"image {image_id} is {image['State']}: {state_reason(image)}")
        return image["State"] == "available", f"state {image['State']}", image

    return poller.until(f"image {image_id} to become available", probe)
