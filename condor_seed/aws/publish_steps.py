"""What publishing does in one region, as a list of small steps (Packer's `step_*.go` shape).

Each step knows
- `needed(region)`: whether the region's image still lacks it (read from the image as described once
  after the copy, so a re-run only does what is missing);
- `describe(region)`: the `--dry-run` plan's words for it;
- `apply(region)`: the change (boto3 calls live in `images` and `catalog`);
- `undo(region)` where there is something to take back (only the copy: the rest changes our own
  image, which the copy's undo removes anyway).
`region_steps()` is the one list: `Publisher` runs it through `pipeline.Pipeline` and prints its plan
from it, so the plan and the run cannot drift apart. The launch permission comes last but one: an
image is public only once everything else about it is right; the SSM pointer follows it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..errors import PublishError
from . import images
from .catalog import point_ssm_at, retire, ssm_value
from .prune import apply_plan, plan_region
from .tags import parse_utc
from .waiters import Poller, describe_image, wait_image_available, wait_image_exists

if TYPE_CHECKING:
    from .publish import Publisher

COPY_ATTEMPTS = 5  # fresh ClientTokens tried when AWS keeps handing back a removed copy


def client_token(source_ref: str, region: str, attempt: int) -> str:
    """Same source and region -> same token, so a retried CopyImage never makes a second copy. A new
    attempt number is used only when the token's earlier copy was removed (undone by a failed run)."""
    return hashlib.sha256(f"{source_ref}->{region}#{attempt}".encode()).hexdigest()[:64]


def describe_error(exc: BaseException) -> str:
    return str(exc).replace("\n", " ") or type(exc).__name__


@dataclass
class Outcome:
    region: str
    image_id: str | None = None
    created: bool = False
    ok: bool = False
    error: str | None = None
    undone: list[str] = field(default_factory=list)  # what undoing this run's copy did (joins the error)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            return f"{self.region}: published {self.image_id}" + "".join(f"; {n}" for n in self.notes)
        return f"{self.region}: FAILED: {self.error}"


@dataclass
class Region:
    """One region's publish: the state every step reads and the copy step fills in."""

    publisher: "Publisher"
    name: str
    image: dict | None  # the region's image: the source, a copy found from an earlier run, or None yet
    sleep: Callable[[float], None] = time.sleep  # between polls; raises `Cancelled` once the run is interrupted
    outcome: Outcome = field(init=False)

    def __post_init__(self):
        self.outcome = Outcome(self.name, image_id=self.image["ImageId"] if self.image else None)

    source = property(lambda self: self.publisher.source)
    recipe = property(lambda self: self.publisher.source.recipe)
    ec2 = property(lambda self: self.publisher.aws.ec2(self.name))
    ssm = property(lambda self: self.publisher.aws.ssm(self.name))
    image_id = property(lambda self: self.outcome.image_id)

    def say(self, message: str) -> None:
        self.publisher.say(message, self.name)

    def changes(self, key: str, value) -> bool:
        """Whether the image (None: not copied yet, so everything) still differs in `key`."""
        return self.image is None or self.image.get(key) != value


@dataclass
class RegionStep:
    name: str
    needed: Callable[[Region], bool]
    describe: Callable[[Region], str]
    apply: Callable[[Region], None]
    undo: Callable[[Region], None] | None = None
    details: Callable[[Region], list[str]] = lambda region: []  # extra plan lines (prune's decisions)

    def apply_if_needed(self, region: Region) -> None:
        """What `Pipeline` runs: `needed` is asked only now, after the steps before it changed the image."""
        if self.needed(region):
            self.apply(region)


# ----------------------------------------------------------------------------- the copy
def _copy_or_wait(region: Region) -> None:
    if region.image is None:
        region.outcome.image_id = _copy(region)
        region.outcome.created = True
    _wait_available(region)
    region.image = describe_image(region.ec2, region.image_id)


def _copy(region: Region) -> str:
    source, first = region.source, region.source.copy_attempts().get(region.name, 0)
    for attempt in range(first, first + COPY_ATTEMPTS):
        region.say(f"copying {source.ref}")
        image_id = images.copy_image(
            region.ec2, source_region=source.region, source_id=source.image_id, name=source.image["Name"],
            description=region.recipe.ami_description(), client_token=client_token(source.ref, region.name, attempt),
            tags=region.publisher.tags())
        # A token whose earlier copy was undone hands back that deregistered image: copy afresh. A
        # `failed` answer may be this very copy failing fast: the wait reports it and the undo removes it
        # (the next run then uses a fresh token), so no copy is left behind unseen.
        earlier = describe_image(region.ec2, image_id)
        if earlier is None or earlier.get("State") != "deregistered":
            return image_id
        region.say(f"copy token already used by removed {image_id}; copying afresh")
    raise PublishError(f"copy_image keeps returning removed images in {region.name}")


def _wait_available(region: Region) -> None:
    region.say(f"waiting for {region.image_id} to become available")
    publisher = region.publisher
    poller = Poller(interval=publisher.poll_interval, timeout=publisher.copy_timeout, report=region.say,
                    sleep=region.sleep)
    wait_image_exists(region.ec2, region.image_id, poller)
    wait_image_available(region.ec2, region.image_id, poller)


def _undo_copy(region: Region) -> None:
    """Remove a copy this run made (never the source, never a copy an earlier run made); the result
    joins the region's error, which is what the user reads."""
    outcome = region.outcome
    if not (outcome.created and outcome.image_id):
        return
    region.say(f"undoing: removing {outcome.image_id} and its snapshots")
    try:
        image = describe_image(region.ec2, outcome.image_id)
        removed = retire(region.ec2, image) if image else []
    except Exception as exc:  # noqa: BLE001 - say what is left behind
        outcome.undone.append(f"undo FAILED, {outcome.image_id} or its snapshots are left behind: {describe_error(exc)}")
        return
    outcome.undone.append(f"undone: removed {', '.join(removed) or 'nothing left'}")


def _describe_copy(region: Region) -> str:
    source = region.source
    if region.image is None:
        token = client_token(source.ref, region.name, source.copy_attempts().get(region.name, 0))
        return f"copy {source.ref} (ClientToken {token[:12]}…)"
    if region.name == source.region:
        return f"publish the source image {region.image['ImageId']} in place"
    return f"finish existing copy {region.image['ImageId']} ({region.image.get('State')})"


# ----------------------------------------------------------------------------- the finish
def _deprecation_needed(region: Region) -> bool:
    when = region.source.deprecate_at()
    return bool(when) and (region.image is None or parse_utc(region.image.get("DeprecationTime") or "") != when)


def _deprecate(region: Region) -> None:
    when: dt.datetime = region.source.deprecate_at()
    region.say(f"{region.image_id}: deprecation at {when:%Y-%m-%d %H:%M}Z")
    images.deprecate_at(region.ec2, region.image_id, when)


def _prune(region: Region) -> None:
    recipe, image_id = region.recipe, region.image_id
    plan = plan_region(region.ec2, region.ssm, recipe, region.name, keep=recipe.keep, protect=(image_id,),
                       becoming_public=(image_id,) if recipe.public else ())
    problems = apply_plan(region.ec2, plan)
    removed = [d.image_id for d in plan.decisions if d.action != "keep"]
    if removed:
        region.outcome.notes.append("rotated out " + ", ".join(removed))
    region.outcome.notes += [f"prune: {p}" for p in problems]


def _prune_details(region: Region) -> list[str]:
    """What rotation would do once this image is in (a copy still to be made counts as one more)."""
    recipe, new = region.recipe, region.image is None
    plan = plan_region(region.ec2, region.ssm, recipe, region.name, keep=max(recipe.keep - new, 0),
                       quota=5 - (new and recipe.public),
                       protect=(region.image["ImageId"],) if region.image else ())
    return [f"prune: {line.split(': ', 1)[1]}" for line in plan.lines()]


def _make_public(region: Region) -> None:
    region.say(f"{region.image_id}: launch permission Group=all (public)")
    images.make_public(region.ec2, region.image_id)


def _ssm_needed(region: Region) -> bool:
    parameter = region.recipe.ssm_parameter()
    return bool(parameter) and (region.image is None or ssm_value(region.ssm, parameter) != region.image["ImageId"])


def _point_ssm(region: Region) -> None:
    parameter = region.recipe.ssm_parameter()
    region.say(f"{parameter} -> {region.image_id}")
    point_ssm_at(region.ssm, parameter, region.image_id)


def region_steps() -> list[RegionStep]:
    """Every region's publish, in order (the plan prints the same list)."""
    return [
        RegionStep("copy", lambda r: r.image is None or r.image.get("State") != "available", _describe_copy,
                   _copy_or_wait, undo=_undo_copy),
        RegionStep("description", lambda r: r.changes("Description", r.recipe.ami_description()),
                   lambda r: "description",
                   lambda r: images.set_description(r.ec2, r.image_id, r.recipe.ami_description())),
        RegionStep("tags", lambda r: True, lambda r: "tags on image and snapshots",
                   lambda r: images.tag_image(r.ec2, r.image, r.publisher.tags())),
        RegionStep("deprecation", _deprecation_needed,
                   lambda r: f"deprecate at {r.source.deprecate_at():%Y-%m-%d %H:%M}Z", _deprecate),
        RegionStep("prune", lambda r: r.recipe.prune_on_publish, lambda r: "prune", _prune, details=_prune_details),
        RegionStep("public", lambda r: r.recipe.public and not (r.image or {}).get("Public"),
                   lambda r: "launch permission Group=all", _make_public),
        RegionStep("SSM parameter", _ssm_needed, lambda r: f"SSM {r.recipe.ssm_parameter()}", _point_ssm),
    ]
