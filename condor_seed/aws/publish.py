"""`invoke publish-ami`: make a baked seed public in every region that wants it, safely.

Order of events (each step is skipped when it is already done, so a re-run only finishes what is
missing):

1. Gate, read-only: the image belongs to the caller's account and carries this project's build tags
   (build id and recipe, no expiry, `smoke-test=passed`), which a local file cannot forge; the
   manifest agrees (secret scan and smoke test passed, same build); the image is not encrypted, and image block public access is off in every target region (or
   `--disable-block-public-access` turns it off and waits until it reads `unblocked`, bounded).
2. Copy to every target region concurrently (`copy_image` with a `ClientToken` derived from the source
   and the region, tags requested on the copy), an existing copy (found by tag or name) is reused.
3. Per region, the steps of `publish_steps.region_steps()` (run by `pipeline.Pipeline`, and the very
   list `--dry-run` prints): description, tags on image and snapshots, deprecation
   time, rotation (prune) when the recipe asks, and LAST the launch permission `Group=all`; then the
   SSM parameter. A failure undoes what this run created in that region (deregister + delete snapshots).
4. The manifest (a record, when the source came with one) lists every region's AMI; the report names
   the regions that succeeded and failed.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import manifest as manifest_mod
from ..errors import PublishError
from ..log import progress
from ..pipeline import Pipeline, Step, sigterm_as_interrupt
from ..recipe import Recipe, load_recipe
from . import images
from .catalog import SOURCE_AMI_TAG, aws_errors, find_copies, published_tags
from .publish_steps import Outcome, Region, client_token, describe_error, region_steps
from .session import Aws
from .build import BuildResult, run_concurrently, secret_scan_result
from .tags import BASE_AMI_TAG, BUILD_ID_TAG, EXPIRES_TAG, FINGERPRINT_TAG, RECIPE_TAG, SMOKE_TEST_TAG, parse_utc, tag_dict
from .waiters import describe_image

__all__ = ["Outcome", "PublishError", "Publisher", "Source", "client_token", "publish", "publish_ami",
           "source_from_build", "source_from_image"]

POLL_INTERVAL = 5.0      # seconds between polls of a copy's state and of block public access
COPY_TIMEOUT = 3600.0    # a large cross-region copy can take the better part of an hour
BPA_TIMEOUT = 900.0      # AWS: turning off image block public access can take up to 10 minutes
BPA_CONSOLE = "EC2 > Dashboard > Account attributes > Data protection and security > Block public access for AMIs"


def bpa_fix(region: str) -> str:
    return (f"`aws ec2 disable-image-block-public-access --region {region}` (or console, region {region}: "
            f"{BPA_CONSOLE}), or re-run with --disable-block-public-access")


@dataclass
class Source:
    """The image to publish and the manifest build that vouches for it."""

    recipe: Recipe
    region: str
    image: dict
    build: dict = field(default_factory=dict)
    manifest_path: Path | None = None

    image_id = property(lambda self: self.image["ImageId"])
    ref = property(lambda self: f"{self.region}:{self.image_id}")
    custom = property(lambda self: self.build.get("custom_data") or {})

    @property
    def build_id(self) -> str | None:
        return self.custom.get("build_id") or tag_dict(self.image.get("Tags")).get(BUILD_ID_TAG)

    def deprecate_at(self) -> dt.datetime | None:
        """Deprecation time: the build time plus the recipe's days (the same in every region and on
        every re-run), to the minute as AWS keeps it."""
        days = self.recipe.deprecate_after_days
        if not days:
            return None
        if self.build.get("build_time"):
            built = dt.datetime.fromtimestamp(int(self.build["build_time"]), dt.timezone.utc)
        else:
            built = parse_utc(self.image["CreationDate"])
        return (built + dt.timedelta(days=days)).replace(second=0, microsecond=0)

    def copy_attempts(self) -> dict[str, int]:
        """How many copies per region earlier runs undid (manifest `copy_attempts`: `region=N,…`).
        Each undone copy moves that region to a fresh ClientToken: AWS would hand the old token's
        (deregistered) image back."""
        pairs = (p.split("=", 1) for p in self.custom.get("copy_attempts", "").split(",") if "=" in p)
        return {region: int(n) for region, n in pairs}


# ------------------------------------------------------------------------------------ sources
def _split_ref(ref: str) -> tuple[str, str]:
    pairs = list(manifest_mod.parse_artifact_id(ref).items())
    if len(pairs) != 1 or not pairs[0][1].startswith("ami-"):
        raise PublishError(f"manifest artifact {ref!r} is not `region:ami-…`")
    return pairs[0]


def _source(aws: Aws, region: str, image_id: str, build: dict, path: Path | None,
            recipe: Recipe | None = None) -> Source:
    aws.caller_identity(region)  # no credentials: one clear line, before anything else
    with aws_errors(f"reading {region}:{image_id}", PublishError):
        image = describe_image(aws.ec2(region), image_id)
    if image is None:
        raise PublishError(f"{region}:{image_id}: no such image (deregistered, or another account/region?)")
    if recipe is None:
        name = ((build.get("custom_data") or {}).get("recipe") or build.get("name")
                or tag_dict(image.get("Tags")).get(RECIPE_TAG))
        if not name:
            raise PublishError(f"{region}:{image_id}: no recipe recorded (manifest custom_data.recipe or tag {RECIPE_TAG})")
        recipe = load_recipe(name)
    return Source(recipe, region, image, build, path)


def source_from_manifest(aws: Aws, path: Path) -> Source:
    """The manifest's last build (Packer semantics: `last_run_uuid`); its first artifact is the source."""
    build = manifest_mod.find_build(manifest_mod.load(path))
    ref = (build.get("custom_data") or {}).get("source_ami") or build.get("artifact_id", "").split(",")[0]
    return _source(aws, *_split_ref(ref), build, path)


def source_from_ami(aws: Aws, image_id: str, region: str, manifest_dir: Path | None = None) -> Source:
    """An image named on the command line still needs the manifest record of its scan and smoke test."""
    found = manifest_mod.find_by_ami(region, image_id, manifest_dir)
    path, build = found if found else (None, {})
    return _source(aws, region, image_id, build, path)


def source_from_build(aws: Aws, built: BuildResult) -> Source:
    """A build this process just made (and smoke-tested): its recipe and manifest entry as objects."""
    return _source(aws, built.region, built.image_id, built.build, built.manifest_path, built.spec)


def source_from_image(aws: Aws, recipe: Recipe, region: str, image: dict, manifest_dir: Path | None = None) -> Source:
    """A finished, smoke-tested image found by its tags (nightly's resume): its manifest entry is
    recreated from the tags, and recorded in the recipe's manifest when publishing ends."""
    return _source(aws, region, image["ImageId"], build_from_image(region, image),
                   manifest_mod.path_for(recipe.name, manifest_dir), recipe)


def build_from_image(region: str, image: dict) -> dict:
    """The manifest entry of a built, smoke-tested image, recreated from its tags (in CI the manifest the
    build wrote did not outlive the run): what the gate and the record need."""
    tags = tag_dict(image.get("Tags"))
    created = parse_utc(image.get("CreationDate") or "")
    return manifest_mod.new_build(
        recipe=tags[RECIPE_TAG], build_id=tags[BUILD_ID_TAG], region_amis={region: image["ImageId"]},
        build_time=int(created.timestamp()) if created else None,
        custom_data={
            "recipe": tags[RECIPE_TAG],
            "fingerprint": tags[FINGERPRINT_TAG],
            "base_ami": tags.get(BASE_AMI_TAG, ""),
            "build_id": tags[BUILD_ID_TAG],
            "ami_name": image.get("Name", ""),
            "secret_scan": secret_scan_result(tags),
            "smoke_test": tags.get(SMOKE_TEST_TAG, "not-run"),
            "encrypted": "true" if images.encrypted(image) else "false",
            "resumed": "true",
        },
    )


# ---------------------------------------------------------------------------------- publisher
@dataclass
class Publisher:
    aws: Aws
    source: Source
    regions: list[str]
    dry_run: bool = False
    poll_interval: float = POLL_INTERVAL
    copy_timeout: float = COPY_TIMEOUT
    bpa_timeout: float = BPA_TIMEOUT

    recipe = property(lambda self: self.source.recipe)
    public = property(lambda self: self.recipe.public)

    def say(self, message: str, region: str | None = None) -> None:
        progress(("(dry run) " if self.dry_run else "") + message, prefix=f"{region}: " if region else "")

    # -------------------------------------------------------------------------- gate
    def gate(self, disable_bpa: bool) -> None:
        src, problems = self.source, self._provenance()
        where = src.manifest_path or "no manifest (publish with --manifest PATH)"
        for key, label in (("secret_scan", "secret scan"), ("smoke_test", "smoke test")):
            value = src.custom.get(key, "not-run")
            if value != "passed":
                problems.append(f"its {label} is {value!r} in {where}, it must be 'passed'")
        if EXPIRES_TAG in tag_dict(src.image.get("Tags")):
            problems.append(f"it still carries {EXPIRES_TAG}, so its build never finished")
        if src.image.get("State") != "available":
            problems.append(f"it is {src.image.get('State')!r}, not available")
        if self.public and self._encrypted():
            problems.append("it is encrypted, and AWS cannot make encrypted AMIs public (rebuild unencrypted)")
        deprecate_at = src.deprecate_at()
        if deprecate_at and deprecate_at <= dt.datetime.now(dt.timezone.utc):
            problems.append(f"it was due for deprecation at {deprecate_at:%Y-%m-%d %H:%M}Z already (rebuild)")
        if problems:
            raise PublishError(f"refusing to publish {src.ref} ({self.recipe.name}): " + "; ".join(problems))
        if self.public:
            self._block_public_access(disable_bpa)

    def _provenance(self) -> list[str]:
        """What a local manifest cannot vouch for (anyone can edit it): the image is in the caller's
        own account and carries the tags only this project's build and smoke test put there."""
        src, problems = self.source, []
        tags = tag_dict(src.image.get("Tags"))
        account = self.aws.caller_identity(src.region).get("Account")
        if src.image.get("OwnerId") != account:
            problems.append(f"it belongs to account {src.image.get('OwnerId')}, not to yours ({account})")
        if not tags.get(BUILD_ID_TAG) or tags.get(RECIPE_TAG) != self.recipe.name:
            problems.append(f"it lacks this project's build tags ({BUILD_ID_TAG}, {RECIPE_TAG}={self.recipe.name})")
        elif src.custom.get("build_id") not in (None, tags[BUILD_ID_TAG]):
            problems.append(f"the manifest's build {src.custom['build_id']!r} is not the image's {tags[BUILD_ID_TAG]!r}")
        if tags.get(SMOKE_TEST_TAG) != "passed":
            problems.append(f"its {SMOKE_TEST_TAG} tag is {tags.get(SMOKE_TEST_TAG, 'missing')!r}, it must be 'passed'")
        return problems

    def _encrypted(self) -> bool:
        if str(self.source.custom.get("encrypted", "false")).lower() == "true":
            return True
        return images.encrypted(self.source.image) or images.snapshots_encrypted(self.aws.ec2(self.source.region),
                                                                                 self.source.image)

    def _block_public_access(self, disable: bool) -> None:
        states = {r: images.block_public_access(self.aws.ec2(r)) for r in self.regions}
        blocked = {r: s for r, s in states.items() if s.get("ImageBlockPublicAccessState") != "unblocked"}
        if not blocked:
            return
        locked = [r for r, s in blocked.items() if s.get("ManagedBy") == "declarative-policy"]
        if locked:
            raise PublishError(
                f"image block public access is on in {', '.join(locked)} and enforced by an AWS Organizations "
                "declarative policy: ask your organization's administrator to allow public AMIs there, "
                "or publish to other regions (--regions)")
        if not disable:
            raise PublishError(
                "image block public access is on in " + ", ".join(blocked) + ", so no AMI can be made public there;"
                " turn it off: " + "; ".join(bpa_fix(r) for r in blocked))
        for region in blocked:
            if self.dry_run:
                self.say("would turn off image block public access", region)
                continue
            self.say("turning off image block public access", region)
            images.disable_block_public_access(self.aws.ec2(region))
        if not self.dry_run:
            self._wait_unblocked(list(blocked))

    def _wait_unblocked(self, regions: list[str]) -> None:
        deadline = time.monotonic() + self.bpa_timeout
        waiting = list(regions)
        while True:
            waiting = [r for r in waiting if images.block_public_access(self.aws.ec2(r))
                       .get("ImageBlockPublicAccessState") != "unblocked"]
            if not waiting:
                self.say("image block public access reads unblocked in " + ", ".join(regions))
                return
            if time.monotonic() >= deadline:
                raise PublishError(
                    f"image block public access still reads blocked in {', '.join(waiting)} after "
                    f"{self.bpa_timeout:.0f} s (AWS says it can take 10 minutes): re-run later; " +
                    "; ".join(bpa_fix(r) for r in waiting))
            self.say(f"waiting for image block public access to read unblocked in {', '.join(waiting)}")
            time.sleep(self.poll_interval)

    # -------------------------------------------------------------------------- per region
    def existing(self, region: str) -> dict | None:
        if region == self.source.region:
            return describe_image(self.aws.ec2(region), self.source.image_id)
        copies = find_copies(self.aws.ec2(region), source=self.source.ref, build_id=self.source.build_id,
                             name=self.source.image.get("Name"))
        return copies[0] if copies else None

    def tags(self) -> dict[str, str]:
        extra = {SOURCE_AMI_TAG: self.source.ref, RECIPE_TAG: self.recipe.name, **self.recipe.tags}
        if self.source.build_id:
            extra[BUILD_ID_TAG] = self.source.build_id
        return published_tags(tag_dict(self.source.image.get("Tags")), extra)

    def publish_region(self, name: str, sleep: Callable[[float], None] = time.sleep) -> Outcome:
        """Run the region's steps (those still needed); a failure undoes this run's copy there, and so
        does an interrupt (`sleep` raises `Cancelled`), which then reaches the caller."""
        region = Region(self, name, image=None, sleep=sleep)
        try:
            region.image = self.existing(name)
            region.outcome.image_id = region.image["ImageId"] if region.image else None
            if region.image is not None and name != self.source.region:
                region.say(f"found copy {region.image['ImageId']} ({region.image.get('State')}) from an earlier run")
            Pipeline(report=region.say).run([
                Step(step.name, functools.partial(step.apply_if_needed, region),
                     functools.partial(step.undo, region) if step.undo else None)
                for step in region_steps()])
            region.outcome.ok = True
        except Exception as exc:  # noqa: BLE001 - one region's failure is reported, the others go on
            region.outcome.error = describe_error(exc) + "".join(f" ({u})" for u in region.outcome.undone)
        return region.outcome

    # -------------------------------------------------------------------------- plan / run
    def plan(self) -> list[str]:
        """The `--dry-run` plan: per region, what the same steps `publish_regions` runs would do."""
        lines = [f"publish {self.source.ref} ({self.recipe.name}, build {self.source.build_id or '?'}) "
                 f"{'publicly' if self.public else 'privately'} to {', '.join(self.regions)}"]
        for name in self.regions:
            region = Region(self, name, image=self.existing(name))
            obtain, *finish = region_steps()
            needed = [step for step in finish if step.needed(region)]
            lines.append(f"{name}: {obtain.describe(region)}")
            lines.append(f"{name}:   then " + (", ".join(step.describe(region) for step in needed) or "nothing (done)"))
            lines += [f"{name}:   {line}" for step in needed for line in step.details(region)]
        return lines

    def publish_regions(self) -> list[Outcome]:
        for region in self.regions:  # make the clients before the threads share them
            self.aws.ec2(region)
            self.aws.ssm(region)
        context = contextvars.copy_context()  # the caller's log prefix reaches the region threads
        # Ctrl-C or SIGTERM (under `sigterm_as_interrupt`) stops every region's wait; each undoes its own
        # copy, then the interrupt reaches the caller. What finished stays: a re-run finds it and goes on.
        futures = run_concurrently(
            [functools.partial(lambda region, sleep: context.copy().run(self.publish_region, region, sleep), region)
             for region in self.regions], time.sleep, "publish")
        return [future.result() for future in futures]

    def record(self, outcomes: list[Outcome]) -> None:
        """Write every region's AMI into the manifest build (source first)."""
        if not self.source.manifest_path:
            return
        pairs = manifest_mod.parse_artifact_id(self.source.build.get("artifact_id", ""))
        pairs.setdefault(self.source.region, self.source.image_id)
        attempts = self.source.copy_attempts()
        for outcome in outcomes:
            if outcome.ok:
                pairs[outcome.region] = outcome.image_id
            elif outcome.created:
                pairs.pop(outcome.region, None)
                attempts[outcome.region] = attempts.get(outcome.region, 0) + 1
        ordered = {self.source.region: pairs.pop(self.source.region), **pairs}
        artifact_id = manifest_mod.format_artifact_id(ordered)
        extra = {"source_ami": self.source.ref}
        if attempts:
            extra["copy_attempts"] = ",".join(f"{r}={n}" for r, n in sorted(attempts.items()))
        if self.recipe.ssm_parameter():
            extra["ssm_parameter"] = self.recipe.ssm_parameter()
        build_id = self.source.build.get("packer_run_uuid")
        if not manifest_mod.has_build(self.source.manifest_path, build_id):  # recreated from tags (resume)
            manifest_mod.append_build(self.source.manifest_path, self.source.build)
        manifest_mod.update_build(self.source.manifest_path, build_id, artifact_id=artifact_id, custom_data=extra)


def publish_ami(aws: Aws, *, manifest: Path | None = None, ami: str | None = None, region: str | None = None,
                manifest_dir: Path | None = None, **options) -> list[Outcome]:
    """`invoke publish-ami`: publish the manifest's last build (or one AMI, whose scan and smoke test a
    manifest in `manifest_dir` vouches for); `options` as for `publish`."""
    if bool(manifest) == bool(ami):
        raise PublishError("give either --manifest PATH or --ami ID --region R")
    if ami:
        if not region:
            raise PublishError("--ami needs --region (the region the image is in)")
        source = source_from_ami(aws, ami, region, manifest_dir)
    else:
        source = source_from_manifest(aws, Path(manifest))
    return publish(aws, source, **options)


def publish(aws: Aws, source: Source, *, regions: list[str] | None = None, dry_run: bool = False,
            disable_block_public_access: bool = False, poll_interval: float = POLL_INTERVAL,
            copy_timeout: float = COPY_TIMEOUT, bpa_timeout: float = BPA_TIMEOUT,
            show: Callable[[str], None] = print) -> list[Outcome]:
    """Gate, then every region's steps; the manifest (when the source has one) records the result at the end.
    Raise PublishError naming what failed where. `show` gets each region's outcome line (stdout by
    default; nightly sends them to its recipe's log)."""
    publisher = Publisher(aws, source, list(regions or source.recipe.regions), dry_run=dry_run,
                          poll_interval=poll_interval, copy_timeout=copy_timeout, bpa_timeout=bpa_timeout)
    with aws_errors("publish gate", PublishError):
        try:
            publisher.gate(disable_block_public_access)
            refusal = None
        except PublishError as exc:
            if not dry_run:
                raise
            refusal = exc
        if dry_run:  # the whole plan, then the gate's verdict
            for line in publisher.plan():
                print(f"(dry run) {line}")
            if refusal:
                raise refusal
            return []
    with sigterm_as_interrupt():
        outcomes = publisher.publish_regions()
    publisher.record(outcomes)
    for outcome in outcomes:
        show(outcome.line())
    failed = [o for o in outcomes if not o.ok]
    if failed:
        ok = [o.region for o in outcomes if o.ok]
        raise PublishError(
            f"{source.ref} ({source.recipe.name}) published in {', '.join(ok) or 'no region'}; failed in "
            + "; ".join(f"{o.region}: {o.error}" for o in failed) + " — re-run the same command to finish")
    return outcomes
