"""`invoke nightly`: rebuild the seeds whose content changed, and only those.

For every EC2 recipe, concurrently:

1. plan (read-only): the newest base image (`find_base_image`, one call per recipe) and the content
   fingerprint (`fingerprint(render(recipe), base image id)`, the very call the build makes);
2. look up (read-only): ONE `DescribeImages` per region for all recipes at once (our images tagged
   `condor-seed:fingerprint` with any of the planned values). A recipe is **up to date** when every
   one of its `regions` holds a *published* seed with its fingerprint:
   - an available image we own, tagged with the recipe and that fingerprint,
   - carrying `condor-seed:source-ami`, the tag publish writes when it finishes a region (build
     alone never writes it, so a built-but-unpublished or smoke-failed image does not count),
   - public, when the recipe publishes publicly (publish makes it public as its last step),
   - not deprecated yet (a deprecated seed must be replaced; publish refuses to re-publish it).
   Then it is reported and left alone: no instance is launched. The manifest is not consulted: in
   CI it does not outlive the run, AWS's own tags do.
   The same lookup also covers the build region (`--region`), for step 3.
3. otherwise, unless `--force`: **resume** when an earlier run built and smoke-tested this content
   but its publish stopped part-way (say one region's copy failed). The build region must hold
   - an available image we own, tagged with the recipe and that fingerprint,
   - finished (build id, no `condor-seed:expires`: the bake printed `SUCCESS … scan=clean`, so its
     secret scan passed) and tagged `condor-seed:smoke-test=passed` (nightly and `invoke smoke-test`
     tag an image whose smoke test passed),
   - the original, not a copy (no `condor-seed:source-ami` naming another image), not encrypted, not
     deprecated yet.
   `publish.source_from_image` recreates its manifest entry from its tags and `publish` finishes what
   is missing (it reuses the copies it finds; the entry is recorded when it ends). No instance is
   launched; the action reads "published (resumed)". An image without the smoke-test tag is not
   trusted: the recipe is rebuilt.
4. otherwise (or with `--force`): build (`build_recipe` from that same base image), check the build
   tagged the fingerprint this run planned, smoke-test the image (`smoke_test_and_record`: a failed
   image is removed, it would never be published; a pass is recorded in the build's manifest entry and
   on the image as a tag), publish (`publish` with the build's result as its source; it copies, makes
   public, announces in SSM and prunes when the recipe asks). Stages hand each other objects; the
   manifest is their record, never read back in between.

One recipe's failure does not stop the others; the summary table has one line per recipe and the
run fails (non-zero exit) when any recipe failed. Ctrl-C / SIGTERM stop every build, each undoing
what it created.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The three stages, through their public entry points; the rest is read-only lookup of what is published.
from .aws.build import BuildOptions, build_recipe, plan_content, run_concurrently, secret_scan_result, utcnow
from .aws.publish import build_from_image, publish, source_from_build, source_from_image
from .aws.smoke import DEFAULT_SMOKE_TIMEOUT, smoke_test_and_record

from .aws import images
from .aws.base_image import BaseImage
from .aws.catalog import SOURCE_AMI_TAG, images_with_fingerprints
from .aws.preflight import identity_and_region
from .aws.session import Aws
from .aws.tags import BUILD_ID_TAG, FINGERPRINT_TAG, RECIPE_TAG, SMOKE_TEST_TAG, parse_utc, tag_dict
from .aws.waiters import DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT, REPORT_EVERY
from .errors import NightlyError, RecipeError, SeedError
from .log import prefixed, progress
from .pipeline import sigterm_as_interrupt
from .recipe import Recipe, load_recipes

__all__ = ["BUILT", "RESUMED", "UP_TO_DATE", "NightlyOptions", "RecipeRun", "build_from_image", "failure_summary",
           "format_table", "is_published", "is_resumable", "nightly", "select_recipes"]

UP_TO_DATE = "up to date"
BUILT = "built+published"
RESUMED = "published (resumed)"
MESSAGE_WIDTH = 240  # a failure is one line of the table; the full text is in the recipe's log


@dataclass
class NightlyOptions:
    region: str  # where builds and smoke tests run
    force: bool = False  # rebuild even when a published seed has the fingerprint
    poll_interval: float = DEFAULT_POLL_INTERVAL
    build_timeout: float = DEFAULT_TIMEOUT  # each long wait of the build (bake, image)
    smoke_timeout: float = DEFAULT_SMOKE_TIMEOUT
    console_every: float = 30.0
    report_every: float = REPORT_EVERY
    manifest_dir: Path | None = None
    now: Callable[[], dt.datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep


@dataclass
class RecipeRun:
    """One recipe's line of the summary."""

    recipe: Recipe
    base: BaseImage | None = None
    fingerprint: str = ""
    action: str = ""
    amis: dict[str, str] = field(default_factory=dict)  # region -> AMI
    resume: dict | None = None  # a built, smoke-tested image in the build region to publish instead of rebuilding
    seconds: float = 0.0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    name = property(lambda self: self.recipe.name)
    ok = property(lambda self: self.error is None)

    def fail(self, exc: BaseException) -> str:
        """Record the failure; the table gets it as one line, the log (returned) in full."""
        text = "cancelled" if isinstance(exc, KeyboardInterrupt) else " ".join(str(exc).split()) or type(exc).__name__
        self.error = text
        self.action = "FAILED: " + (text if len(text) <= MESSAGE_WIDTH else text[:MESSAGE_WIDTH - 1] + "…")
        return str(exc) or text

    def finish(self, action: str | None = None) -> None:
        if action and self.ok:
            self.action = action
        self.seconds = time.monotonic() - self.started


def select_recipes(selection: str = "all") -> list[Recipe]:
    """`all` means every EC2 recipe (local ones are skipped); named recipes must all be EC2 ones."""
    recipes = load_recipes(selection or "all")
    if selection in ("all", "", None):
        return [r for r in recipes if r.target == "ec2"]
    local = [r.name for r in recipes if r.target != "ec2"]
    if local:
        raise RecipeError(f"nightly builds EC2 recipes; {', '.join(local)} has target local "
                          "(build it with `invoke build-seed --target local`)")
    return recipes


# ------------------------------------------------------------------------------ up to date?
def _current(image: dict, recipe: Recipe, fp: str, now: dt.datetime) -> bool:
    """Available, of this recipe with that content, not deprecated yet."""
    tags = tag_dict(image.get("Tags"))
    deprecation = parse_utc(image.get("DeprecationTime") or "")
    return (image.get("State") == "available"
            and tags.get(FINGERPRINT_TAG) == fp and tags.get(RECIPE_TAG) == recipe.name
            and (deprecation is None or deprecation > now))


def is_published(image: dict, recipe: Recipe, fp: str, now: dt.datetime) -> bool:
    """A seed publish finished in this region, with that content, still fit to be announced."""
    return (_current(image, recipe, fp, now)
            and SOURCE_AMI_TAG in tag_dict(image.get("Tags"))
            and (image.get("Public") is True or not recipe.public))


def is_resumable(image: dict, recipe: Recipe, fp: str, region: str, now: dt.datetime) -> bool:
    """A finished build in `region` (so its secret scan passed) whose smoke test passed: publish can take it."""
    tags = tag_dict(image.get("Tags"))
    ref = f"{region}:{image.get('ImageId')}"
    return (_current(image, recipe, fp, now)
            and secret_scan_result(tags) == "passed" and tags.get(SMOKE_TEST_TAG) == "passed"
            and tags.get(SOURCE_AMI_TAG, ref) == ref  # the original (publish tags it with its own ref), not a copy
            and not images.encrypted(image))


def published_by_region(aws: Aws, runs: list[RecipeRun], build_region: str) -> dict[str, list[dict]]:
    """Our images carrying any of the planned fingerprints, in every target region and the build region:
    one DescribeImages per region, in parallel."""
    wanted: dict[str, set[str]] = {}
    for run in runs:
        for region in dict.fromkeys([*run.recipe.regions, build_region]):
            wanted.setdefault(region, set()).add(run.fingerprint)

    def lookup(region: str) -> list[dict]:
        return images_with_fingerprints(aws.ec2(region), sorted(wanted[region]))

    if not wanted:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(wanted), 16)) as pool:
        return dict(zip(wanted, pool.map(lookup, wanted)))


def current_seeds(run: RecipeRun, found: dict[str, list[dict]], now: dt.datetime) -> dict[str, str] | None:
    """region -> the newest published seed with the run's fingerprint; None unless every region has one."""
    seeds = {}
    for region in run.recipe.regions:
        match = next((i for i in found.get(region, []) if is_published(i, run.recipe, run.fingerprint, now)), None)
        if match is None:
            return None
        seeds[region] = match["ImageId"]
    return seeds


def resumable_image(run: RecipeRun, found: dict[str, list[dict]], region: str, now: dt.datetime) -> dict | None:
    """The newest built, smoke-tested image with the run's fingerprint in the build region, if any."""
    return next((i for i in found.get(region, []) if is_resumable(i, run.recipe, run.fingerprint, region, now)), None)


# ------------------------------------------------------------------------------ the run
@dataclass
class Nightly:
    aws: Aws
    opts: NightlyOptions

    def report(self, message: str) -> None:
        progress(message)  # inside prefixed: "[recipe] message"

    def plan(self, run: RecipeRun) -> None:
        with prefixed(f"[{run.name}] "):
            try:
                run.base, run.fingerprint = plan_content(self.aws.ec2(self.opts.region), run.recipe)  # as the build will
                self.report(f"base image {run.base.image_id} ({run.base.name}); fingerprint {run.fingerprint[:19]}…")
            except Exception as exc:  # noqa: BLE001 - this recipe fails, the others go on
                self.report(f"FAILED to plan: {run.fail(exc)}")
                run.finish()

    def rebuild(self, run: RecipeRun, sleep: Callable[[float], None]) -> None:
        with prefixed(f"[{run.name}] "):
            try:
                if run.resume:
                    self._resume(run)
                    run.finish(RESUMED)
                else:
                    self._rebuild(run, sleep)
                    run.finish(BUILT)
            except BaseException as exc:  # noqa: BLE001 - Ctrl-C reaches the main thread; here: record it
                self.report(f"FAILED: {run.fail(exc)}")
                run.finish()

    def _rebuild(self, run: RecipeRun, sleep: Callable[[float], None]) -> None:
        """Build from the planned base image, smoke-test, publish: each stage hands the next its result."""
        o = self.opts
        build_opts = BuildOptions(region=o.region, base_ami=run.base.image_id, poll_interval=o.poll_interval,
                                  timeout=o.build_timeout, console_every=o.console_every, report_every=o.report_every,
                                  manifest_dir=o.manifest_dir, now=o.now, sleep=o.sleep)
        built = build_recipe(self.aws, run.recipe, build_opts, report=self.report, sleep=sleep)
        run.amis = {built.region: built.image_id}
        if built.fingerprint != run.fingerprint:  # else every later nightly would rebuild it again
            raise SeedError(f"the build tagged {built.image_id} with fingerprint {built.fingerprint}, this run planned "
                            f"{run.fingerprint}: the two computations disagree")
        try:
            smoke_test_and_record(self.aws, o.region, built.image_id, build=built.build,
                                  manifest_path=built.manifest_path, discard_failed=True, report=self.report,
                                  poll_interval=o.poll_interval, timeout=o.smoke_timeout, report_every=o.report_every,
                                  sleep=sleep, now=o.now)
        except BaseException:
            run.amis = {}
            raise
        self._publish(run, source_from_build(self.aws, built))

    def _resume(self, run: RecipeRun) -> None:
        """Finish publishing an image an earlier run built and smoke-tested: no instance, no rebuild."""
        image, region = run.resume, self.opts.region
        self.report(f"resuming: {region}:{image['ImageId']} (build {tag_dict(image.get('Tags')).get(BUILD_ID_TAG)}) "
                    f"has fingerprint {run.fingerprint[:19]}… and passed its smoke test; publishing it instead of "
                    "rebuilding")
        run.amis = {region: image["ImageId"]}
        self._publish(run, source_from_image(self.aws, run.recipe, region, image, self.opts.manifest_dir))

    def _publish(self, run: RecipeRun, source) -> None:
        outcomes = publish(self.aws, source, poll_interval=self.opts.poll_interval, show=self.report)
        run.amis = {outcome.region: outcome.image_id for outcome in outcomes}

    def bring_up_to_date(self, recipes: list[Recipe]) -> list[RecipeRun]:
        identity_and_region(self.aws, self.opts.region)  # credentials and region: one clear line
        runs = [RecipeRun(recipe) for recipe in recipes]
        self.aws.ec2(self.opts.region)  # one client for the planning threads to share
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(runs), 1), thread_name_prefix="plan") as pool:
            list(pool.map(self.plan, runs))
        planned = [run for run in runs if run.ok]
        stale = planned
        if not self.opts.force:
            found, now = published_by_region(self.aws, planned, self.opts.region), self.opts.now()
            stale = []
            for run in planned:
                seeds = current_seeds(run, found, now)
                if seeds is None:
                    run.resume = resumable_image(run, found, self.opts.region, now)
                    stale.append(run)
                    continue
                run.amis = seeds
                run.finish(UP_TO_DATE)
                progress(f"up to date: a published seed with fingerprint {run.fingerprint[:19]}… is in "
                         f"{', '.join(seeds)}; nothing to build", prefix=f"[{run.name}] ")
        if stale:
            self._rebuild_all(stale)
        return runs

    def _rebuild_all(self, runs: list[RecipeRun]) -> None:
        """Concurrently; Ctrl-C or SIGTERM (main thread) tells every build to stop and undo itself."""
        with sigterm_as_interrupt():
            run_concurrently([functools.partial(self.rebuild, run) for run in runs], self.opts.sleep, "nightly")


def nightly(aws: Aws, recipes: list[Recipe], opts: NightlyOptions) -> list[RecipeRun]:
    """Run the nightly for these recipes; returns one RecipeRun each (check `.ok`), raises nothing per recipe."""
    return Nightly(aws, opts).bring_up_to_date(recipes)


# ------------------------------------------------------------------------------ summary
def format_table(runs: list[RecipeRun]) -> str:
    """recipe | duration | AMI per region | action (last: a failure's one-line reason may be long)."""
    header = ("recipe", "duration", "AMI per region", "action")
    rows = [(run.name, f"{run.seconds:.1f}s", ",".join(f"{r}:{a}" for r, a in run.amis.items()) or "-", run.action)
            for run in runs]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = []
    for row in [header, *rows]:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    return "\n".join(lines)


def failure_summary(runs: list[RecipeRun]) -> NightlyError | None:
    failed = [run.name for run in runs if not run.ok]
    if not failed:
        return None
    return NightlyError(f"{len(failed)} of {len(runs)} recipes failed: {', '.join(failed)} (see the table)")
