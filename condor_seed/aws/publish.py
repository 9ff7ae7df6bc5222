"""`invoke publish-ami`: make a baked seed public in every region that wants it, safely.

Order of events (each step is skipped when it is already done, so a re-run only finishes what is
missing):

1. Gate, read-only: the manifest says the secret scan and the smoke test passed, the image is not
   encrypted, and image block public access is off in every target region (or
   `--disable-block-public-access` turns it off and waits until it reads `unblocked`, bounded).
2. Copy to every target region concurrently (`copy_image` with a `ClientToken` derived from the source
   and the region, tags requested on the copy), an existing copy (found by tag or name) is reused.
3. Per region: `ImdsSupport=v2.0`, description, tags on image and snapshots, deprecation time, rotation
   (prune) when the recipe asks, and LAST the launch permission `Group=all`; then the SSM parameter.
   A failure undoes what this run created in that region (deregister + delete snapshots).
4. The manifest lists every region's AMI; the report names the regions that succeeded and failed.
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import manifest as manifest_mod
from ..log import progress
from ..errors import PublishError
from ..recipe import Recipe, load_recipe
from .catalog import SOURCE_AMI_TAG, aws_errors, find_copies, published_tags, retire, ssm_value
from .images import encrypted, snapshot_ids
from .prune import apply_plan, plan_region
from .session import Aws
from .tags import BUILD_ID_TAG, EXPIRES_TAG, RECIPE_TAG, parse_utc, tag_dict, tag_list
from .waiters import Poller, describe_image, wait_image_available, wait_image_exists

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


@dataclass
class Outcome:
    region: str
    image_id: str | None = None
    created: bool = False
    ok: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            return f"{self.region}: published {self.image_id}" + "".join(f"; {n}" for n in self.notes)
        return f"{self.region}: FAILED: {self.error}"


def client_token(source_ref: str, region: str, attempt: int) -> str:
    """Same source and region -> same token, so a retried CopyImage never makes a second copy. A new
    attempt number is used only when the token's earlier copy was removed (undone by a failed run)."""
    return hashlib.sha256(f"{source_ref}->{region}#{attempt}".encode()).hexdigest()[:64]


def describe_error(exc: BaseException) -> str:
    return str(exc).replace("\n", " ") or type(exc).__name__


# ------------------------------------------------------------------------------------ sources
def _split_ref(ref: str) -> tuple[str, str]:
    pairs = list(manifest_mod.parse_artifact_id(ref).items())
    if len(pairs) != 1 or not pairs[0][1].startswith("ami-"):
        raise PublishError(f"manifest artifact {ref!r} is not `region:ami-…`")
    return pairs[0]


def _source(aws: Aws, region: str, image_id: str, build: dict, path: Path | None) -> Source:
    aws.caller_identity(region)  # no credentials: one clear line, before anything else
    with aws_errors(f"reading {region}:{image_id}", PublishError):
        image = describe_image(aws.ec2(region), image_id)
    if image is None:
        raise PublishError(f"{region}:{image_id}: no such image (deregistered, or another account/region?)")
    name = (build.get("custom_data") or {}).get("recipe") or build.get("name") or tag_dict(image.get("Tags")).get(RECIPE_TAG)
    if not name:
        raise PublishError(f"{region}:{image_id}: no recipe recorded (manifest custom_data.recipe or tag {RECIPE_TAG})")
    return Source(load_recipe(name), region, image, build, path)


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
        src, problems = self.source, []
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

    def _encrypted(self) -> bool:
        if str(self.source.custom.get("encrypted", "false")).lower() == "true":
            return True
        if encrypted(self.source.image):
            return True
        snaps = snapshot_ids(self.source.image)
        found = self.aws.ec2(self.source.region).describe_snapshots(SnapshotIds=snaps)["Snapshots"] if snaps else []
        return any(s.get("Encrypted") for s in found)

    def _block_public_access(self, disable: bool) -> None:
        states = {r: self.aws.ec2(r).get_image_block_public_access_state() for r in self.regions}
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
            self.aws.ec2(region).disable_image_block_public_access()
        if not self.dry_run:
            self._wait_unblocked(list(blocked))

    def _wait_unblocked(self, regions: list[str]) -> None:
        deadline = time.monotonic() + self.bpa_timeout
        waiting = list(regions)
        while True:
            waiting = [r for r in waiting if self.aws.ec2(r).get_image_block_public_access_state()
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

    def run_region(self, region: str) -> Outcome:
        outcome = Outcome(region)
        ec2 = self.aws.ec2(region)
        try:
            image = self._obtain(ec2, region, outcome)
            self._finish(ec2, region, image, outcome)
            outcome.ok = True
        except Exception as exc:  # noqa: BLE001 - one region's failure is reported, the others go on
            outcome.error = describe_error(exc)
            if outcome.created and outcome.image_id:
                outcome.error += self._undo(ec2, region, outcome.image_id)
        return outcome

    def _obtain(self, ec2, region: str, outcome: Outcome) -> dict:
        image = self.existing(region)
        if image is not None:
            outcome.image_id = image["ImageId"]
            if region != self.source.region:
                self.say(f"found copy {image['ImageId']} ({image.get('State')}) from an earlier run", region)
        else:
            outcome.image_id = self._copy(ec2, region)
            outcome.created = True
        if image is None or image.get("State") != "available":
            self._wait_available(ec2, region, outcome.image_id)
        return describe_image(ec2, outcome.image_id)

    def _copy(self, ec2, region: str) -> str:
        tags = tag_list(self.tags())
        first = self.source.copy_attempts().get(region, 0)
        for attempt in range(first, first + 5):
            self.say(f"copying {self.source.ref}", region)
            image_id = ec2.copy_image(
                SourceImageId=self.source.image_id, SourceRegion=self.source.region,
                Name=self.source.image["Name"], Description=self.recipe.ami_description(),
                ClientToken=client_token(self.source.ref, region, attempt),
                TagSpecifications=[{"ResourceType": kind, "Tags": tags} for kind in ("image", "snapshot")],
            )["ImageId"]
            earlier = describe_image(ec2, image_id)
            if earlier is None or earlier.get("State") not in ("deregistered", "failed"):
                return image_id
            self.say(f"copy token already used by removed {image_id}; copying afresh", region)
        raise PublishError(f"copy_image keeps returning removed images in {region}")

    def _wait_available(self, ec2, region: str, image_id: str) -> None:
        self.say(f"waiting for {image_id} to become available", region)
        poller = Poller(interval=self.poll_interval, timeout=self.copy_timeout,
                        report=lambda message: self.say(message, region))
        wait_image_exists(ec2, image_id, poller)
        wait_image_available(ec2, image_id, poller)

    def _finish(self, ec2, region: str, image: dict, outcome: Outcome) -> None:
        image_id = image["ImageId"]
        if image.get("ImdsSupport") != "v2.0":
            self.say(f"{image_id}: ImdsSupport=v2.0", region)
            ec2.modify_image_attribute(ImageId=image_id, ImdsSupport={"Value": "v2.0"})
        description = self.recipe.ami_description()
        if image.get("Description") != description:
            ec2.modify_image_attribute(ImageId=image_id, Description={"Value": description})
        resources = [image_id, *snapshot_ids(image)]
        ec2.create_tags(Resources=resources, Tags=tag_list(self.tags()))
        deprecate_at = self.source.deprecate_at()
        if deprecate_at and parse_utc(image.get("DeprecationTime") or "") != deprecate_at:
            self.say(f"{image_id}: deprecation at {deprecate_at:%Y-%m-%d %H:%M}Z", region)
            ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=deprecate_at)
        if self.recipe.prune_on_publish:
            self._prune(ec2, region, image_id, outcome)
        if self.public and not image.get("Public"):
            self.say(f"{image_id}: launch permission Group=all (public)", region)
            ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
        parameter = self.recipe.ssm_parameter()
        if parameter and ssm_value(self.aws.ssm(region), parameter) != image_id:
            self.say(f"{parameter} -> {image_id}", region)
            self.aws.ssm(region).put_parameter(Name=parameter, Value=image_id, Type="String",
                                               DataType="aws:ec2:image", Overwrite=True)

    def _prune(self, ec2, region: str, image_id: str, outcome: Outcome) -> None:
        plan = plan_region(ec2, self.aws.ssm(region), self.recipe, region, keep=self.recipe.keep,
                           protect=(image_id,), becoming_public=(image_id,) if self.public else ())
        problems = apply_plan(ec2, plan)
        removed = [d.image_id for d in plan.decisions if d.action != "keep"]
        if removed:
            outcome.notes.append("rotated out " + ", ".join(removed))
        outcome.notes += [f"prune: {p}" for p in problems]

    def _undo(self, ec2, region: str, image_id: str) -> str:
        self.say(f"undoing: removing {image_id} and its snapshots", region)
        try:
            image = describe_image(ec2, image_id)
            removed = retire(ec2, image) if image else []
        except Exception as exc:  # noqa: BLE001
            return f" (undo FAILED, {image_id} or its snapshots are left behind: {describe_error(exc)})"
        return f" (undone: removed {', '.join(removed) or 'nothing left'})"

    # -------------------------------------------------------------------------- plan / run
    def plan(self) -> list[str]:
        lines = [f"publish {self.source.ref} ({self.recipe.name}, build {self.source.build_id or '?'}) "
                 f"{'publicly' if self.public else 'privately'} to {', '.join(self.regions)}"]
        deprecate_at = self.source.deprecate_at()
        for region in self.regions:
            image = self.existing(region)
            if image is None:
                token = client_token(self.source.ref, region, self.source.copy_attempts().get(region, 0))
                lines.append(f"{region}: copy {self.source.ref} (ClientToken {token[:12]}…)")
            elif region == self.source.region:
                lines.append(f"{region}: publish the source image {image['ImageId']} in place")
            else:
                lines.append(f"{region}: finish existing copy {image['ImageId']} ({image.get('State')})")
            steps = ["ImdsSupport=v2.0", "description", "tags on image and snapshots"]
            if deprecate_at:
                steps.append(f"deprecate at {deprecate_at:%Y-%m-%d %H:%M}Z")
            if self.recipe.prune_on_publish:
                steps.append("prune")
            if self.public:
                steps.append("launch permission Group=all")
            if self.recipe.ssm_parameter():
                steps.append(f"SSM {self.recipe.ssm_parameter()}")
            lines.append(f"{region}:   then " + ", ".join(steps))
            if self.recipe.prune_on_publish:
                keep = self.recipe.keep - (image is None)
                quota_plan = plan_region(self.aws.ec2(region), self.aws.ssm(region), self.recipe, region,
                                         keep=max(keep, 0), quota=5 - (image is None and self.public),
                                         protect=(image["ImageId"],) if image else ())
                lines += [f"{region}:   prune: {line.split(': ', 1)[1]}" for line in quota_plan.lines()]
        return lines

    def run(self) -> list[Outcome]:
        for region in self.regions:  # make the clients before the threads share them
            self.aws.ec2(region)
            self.aws.ssm(region)
        context = contextvars.copy_context()  # the caller's log prefix reaches the region threads
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(self.regions), 16)) as pool:
            return list(pool.map(lambda region: context.copy().run(self.run_region, region), self.regions))

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
        manifest_mod.update_build(self.source.manifest_path, self.source.build.get("packer_run_uuid"),
                                  artifact_id=artifact_id, custom_data=extra)


def publish_ami(aws: Aws, *, manifest: Path | None = None, ami: str | None = None, region: str | None = None,
                regions: list[str] | None = None, dry_run: bool = False, disable_block_public_access: bool = False,
                poll_interval: float = POLL_INTERVAL, copy_timeout: float = COPY_TIMEOUT,
                bpa_timeout: float = BPA_TIMEOUT, manifest_dir: Path | None = None,
                show: Callable[[str], None] = print) -> list[Outcome]:
    """Publish the manifest's last build (or one AMI); raise PublishError naming what failed where.
    `show` gets each region's outcome line (stdout by default; nightly sends them to its recipe's log)."""
    if bool(manifest) == bool(ami):
        raise PublishError("give either --manifest PATH or --ami ID --region R")
    if ami:
        if not region:
            raise PublishError("--ami needs --region (the region the image is in)")
        source = source_from_ami(aws, ami, region, manifest_dir)
    else:
        source = source_from_manifest(aws, Path(manifest))
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
    outcomes = publisher.run()
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
