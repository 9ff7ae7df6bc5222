"""`invoke nightly`: rebuild the seeds whose content changed, and only those.

For every EC2 recipe, concurrently:

0. upstream (read-only, not AWS): the newest `condor` each recipe's HTCondor repository serves
   (`upstream.check_recipes`: repomd.xml, and the primary metadata only when repomd's revision is not
   the cached one). An unreadable repository is a warning (log and table); the fingerprint then holds
   the condor version the newest published seed was fingerprinted with (`condor-seed:htcondor` tag).
1. plan (read-only): the newest base image (`find_base_image`, one call per recipe) and the content
   fingerprint (`plan_content`: `fingerprint(render(recipe), base image id, condor version)`, the very
   call the build makes, given the same condor version);
2. look up (read-only): ONE `DescribeImages` per region for all recipes at once (our images tagged
   with any of the recipes' names). A recipe is **up to date** when every
   one of its `regions` holds a *published* seed with its fingerprint:
   - an available image we own, tagged with the recipe and that fingerprint,
   - carrying `condor-seed:source-ami`, the tag publish writes when it finishes a region (build
     alone never writes it, so a built-but-unpublished or smoke-failed image does not count),
   - public, when the recipe publishes publicly (publish makes it public as its last step),
   - not deprecated yet (a deprecated seed must be replaced; publish refuses to re-publish it).
   Then it is reported and left alone: no instance is launched — unless the newest published seed
   is older than the recipe's `max_age_days` (since its creation or its last `condor-seed:checked`):
   it is rebuilt, and when the new image's package list equals the published one's
   (`condor-seed:packages-sha256`), the new image is removed before any smoke test or publish, the
   published seeds are tagged `condor-seed:checked`, and the table says `checked: unchanged`.
   The manifest is not consulted: in
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
from .aws.catalog import SOURCE_AMI_TAG, images_of_recipes
from .aws.preflight import identity_and_region
from .aws.session import Aws
from .aws.tags import (BUILD_ID_TAG, CHECKED_TAG, FINGERPRINT_TAG, HTCONDOR_TAG, RECIPE_TAG, SMOKE_TEST_TAG,
                       parse_utc, tag_dict, utc_iso)
from .aws.waiters import DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT, REPORT_EVERY
from . import manifest, upstream
from .changes import builds_with_sbom, compare_builds
from .errors import NightlyError, RecipeError, SeedError
from .freshness import CHECKED_UNCHANGED, CondorVersion, age_days, condor_for_fingerprint, too_old, unchanged
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
    # The HTCondor repository check: its answers are cached here (by repomd revision); `htcondor_mirror`
    # reads the metadata from a mirror instead of the recipes' repo_base (also: CONDOR_SEED_HTCONDOR_MIRROR).
    upstream_cache: Path | None = field(default_factory=upstream.default_cache_path)
    htcondor_mirror: str | None = None
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
    check: upstream.UpstreamCheck = field(default_factory=upstream.UpstreamCheck)  # the repository's answer
    condor: CondorVersion | None = None  # the condor version in the fingerprint, and where it came from
    published: dict | None = None  # the newest published seed of the recipe (any fingerprint)
    recheck: bool = False  # up to date but older than max_age_days: rebuilt to look for unseen errata
    seeds: dict[str, str] = field(default_factory=dict)  # region -> the published seed a recheck compares with
    changes: str = ""  # the short form of what changed against the published seed
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
            warning = self.condor.warning if self.condor else None
            self.action = action + (f" (WARNING: {warning})" if warning else "")
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
def _current(image: dict, recipe: Recipe, fp: str | None, now: dt.datetime) -> bool:
    """Available, of this recipe with that content (any content: fp None), not deprecated yet."""
    tags = tag_dict(image.get("Tags"))
    deprecation = parse_utc(image.get("DeprecationTime") or "")
    return (image.get("State") == "available"
            and fp in (None, tags.get(FINGERPRINT_TAG)) and tags.get(RECIPE_TAG) == recipe.name
            and (deprecation is None or deprecation > now))


def is_published(image: dict, recipe: Recipe, fp: str | None, now: dt.datetime) -> bool:
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
    """Our images of these recipes (any fingerprint: the newest published one also tells how old the seed
    is and what it held), in every target region and the build region: one DescribeImages per region,
    in parallel."""
    wanted: dict[str, set[str]] = {}
    for run in runs:
        for region in dict.fromkeys([*run.recipe.regions, build_region]):
            wanted.setdefault(region, set()).add(run.name)

    def lookup(region: str) -> list[dict]:
        return images_of_recipes(aws.ec2(region), sorted(wanted[region]))

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


def newest_published(run: RecipeRun, found: dict[str, list[dict]], now: dt.datetime) -> dict | None:
    """The newest published seed of the recipe (any fingerprint) in its first region."""
    region = run.recipe.regions[0]
    return next((i for i in found.get(region, []) if is_published(i, run.recipe, None, now)), None)


def seed_fresh_since(image: dict) -> dt.datetime | None:
    """When the seed was built or last found unchanged by a rebuild (`condor-seed:checked`), the later."""
    moments = [parse_utc(image.get("CreationDate") or ""), parse_utc(tag_dict(image.get("Tags")).get(CHECKED_TAG, ""))]
    return max((m for m in moments if m), default=None)


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

    def plan(self, run: RecipeRun, published_tags: dict[str, str] | None = None) -> None:
        """Base image and fingerprint, with the upstream condor (or, with the repository unreadable, the
        published seed's: `published_tags`), as the build will compute them."""
        with prefixed(f"[{run.name}] "):
            try:
                run.condor = condor_for_fingerprint(run.check, published_tags)
                run.base, run.fingerprint = plan_content(self.aws.ec2(self.opts.region), run.recipe,
                                                         condor_version=run.condor.version)
                self.report(f"base image {run.base.image_id} ({run.base.name}); condor "
                            f"{run.condor.version or 'series'} ({run.condor.source}); fingerprint {run.fingerprint[:19]}…")
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
                    run.finish(self._rebuild(run, sleep))
            except BaseException as exc:  # noqa: BLE001 - Ctrl-C reaches the main thread; here: record it
                self.report(f"FAILED: {run.fail(exc)}")
                run.finish()

    def _rebuild(self, run: RecipeRun, sleep: Callable[[float], None]) -> str:
        """Build from the planned base image, smoke-test, publish: each stage hands the next its result.
        A recheck whose image holds the published seed's packages stops after the build."""
        o = self.opts
        build_opts = BuildOptions(region=o.region, base_ami=run.base.image_id, poll_interval=o.poll_interval,
                                  timeout=o.build_timeout, console_every=o.console_every, report_every=o.report_every,
                                  manifest_dir=o.manifest_dir, condor_version=run.condor.version, now=o.now,
                                  sleep=o.sleep)
        built = build_recipe(self.aws, run.recipe, build_opts, report=self.report, sleep=sleep)
        run.amis = {built.region: built.image_id}
        if built.fingerprint != run.fingerprint:  # else every later nightly would rebuild it again
            raise SeedError(f"the build tagged {built.image_id} with fingerprint {built.fingerprint}, this run planned "
                            f"{run.fingerprint}: the two computations disagree")
        run.changes = self.describe_changes(run, built.build)
        if run.recheck and unchanged(built.build["custom_data"].get("packages_sha256", ""),
                                     tag_dict(run.published.get("Tags"))):
            removed = images.delete_image(self.aws.ec2(o.region), built.image_id)
            self.report(f"same packages as the published seed: removed {', '.join(removed)}")
            run.amis = self._mark_checked(run)
            return CHECKED_UNCHANGED
        try:
            smoke_test_and_record(self.aws, o.region, built.image_id, build=built.build,
                                  manifest_path=built.manifest_path, discard_failed=True, report=self.report,
                                  poll_interval=o.poll_interval, timeout=o.smoke_timeout, report_every=o.report_every,
                                  sleep=sleep, now=o.now)
        except BaseException:
            run.amis = {}
            raise
        self._publish(run, source_from_build(self.aws, built))
        return BUILT

    def describe_changes(self, run: RecipeRun, build: dict) -> str:
        """The short form against the published seed: condor versions from the tags; the package count
        when that seed's SBOM is recorded in the manifest folder (in CI: the artifact of its run)."""
        if not run.published:
            return "first seed"
        old_tags, new_data = tag_dict(run.published.get("Tags")), build["custom_data"]
        old_condor, new_condor = old_tags.get(HTCONDOR_TAG, "?"), new_data.get("htcondor_fingerprint", "?")
        old_build = next((b for b in builds_with_sbom(self._manifest(run))
                          if b["packer_run_uuid"] == old_tags.get(BUILD_ID_TAG)), None)
        if old_build is not None:
            found = compare_builds(old_build, build)
            found.htcondor = None if old_condor == new_condor else (old_condor, new_condor)
            return found.short()
        parts = [f"condor {old_condor}→{new_condor}"] if old_condor != new_condor else []
        parts.append("same pkgs" if unchanged(new_data.get("packages_sha256", ""), old_tags)
                     else "pkgs changed (no earlier SBOM here)")
        return ", ".join(parts)

    def _manifest(self, run: RecipeRun) -> dict:
        path = manifest.path_for(run.name, self.opts.manifest_dir)
        return manifest.load(path) if path.exists() else {"builds": []}

    def _mark_checked(self, run: RecipeRun) -> dict[str, str]:
        """The published seeds were found current: restart their age, so tomorrow does not rebuild again."""
        for region, image_id in run.seeds.items():
            images.tag_resources(self.aws.ec2(region), [image_id], {CHECKED_TAG: utc_iso(self.opts.now())})
        self.report(f"checked: the rebuilt image had the published seed's packages; kept {run.seeds}")
        return dict(run.seeds)

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
        self.check_upstream(runs)
        self.aws.ec2(self.opts.region)  # one client for the planning threads to share
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(len(runs), 1), thread_name_prefix="plan") as pool:
            list(pool.map(self.plan, runs))
        planned = [run for run in runs if run.ok]
        found, now = published_by_region(self.aws, planned, self.opts.region), self.opts.now()
        stale = []
        for run in planned:
            run.published = newest_published(run, found, now)
            if run.check.warning and run.published:  # the repository is unreadable: the published state stands
                self.plan(run, tag_dict(run.published.get("Tags")))
            if not run.ok or self.opts.force:
                stale += [run] if run.ok else []
                continue
            seeds = current_seeds(run, found, now)
            if seeds is None:
                run.resume = resumable_image(run, found, self.opts.region, now)
                stale.append(run)
                continue
            fresh_since = seed_fresh_since(run.published) if run.published else None
            if too_old(fresh_since, run.recipe.max_age_days, now):
                run.recheck, run.seeds = True, seeds
                progress(f"the published seed is {age_days(fresh_since, now) or 0:.1f} days old (max_age_days "
                         f"{run.recipe.max_age_days}): rebuilding to look for updates no one outside can see",
                         prefix=f"[{run.name}] ")
                stale.append(run)
                continue
            run.amis = seeds
            run.finish(UP_TO_DATE)
            progress(f"up to date: a published seed with fingerprint {run.fingerprint[:19]}… is in "
                     f"{', '.join(seeds)}; nothing to build", prefix=f"[{run.name}] ")
        if stale:
            self._rebuild_all(stale)
        return runs

    def check_upstream(self, runs: list[RecipeRun]) -> None:
        """The newest condor each recipe's repository serves (one read per repository). Unreadable: a
        warning now and in the table; the fingerprint then keeps the published seed's version."""
        checks = upstream.check_recipes([run.recipe for run in runs], upstream.Cache(self.opts.upstream_cache),
                                        mirror=self.opts.htcondor_mirror)
        for run in runs:
            run.check = checks[run.name]
            if run.check.warning:
                progress(f"WARNING: {run.check.warning}", prefix=f"[{run.name}] ")

    def _rebuild_all(self, runs: list[RecipeRun]) -> None:
        """Concurrently; Ctrl-C or SIGTERM (main thread) tells every build to stop and undo itself."""
        with sigterm_as_interrupt():
            run_concurrently([functools.partial(self.rebuild, run) for run in runs], self.opts.sleep, "nightly")


def nightly(aws: Aws, recipes: list[Recipe], opts: NightlyOptions) -> list[RecipeRun]:
    """Run the nightly for these recipes; returns one RecipeRun each (check `.ok`), raises nothing per recipe."""
    return Nightly(aws, opts).bring_up_to_date(recipes)


# ------------------------------------------------------------------------------ summary
def format_table(runs: list[RecipeRun]) -> str:
    """recipe | duration | AMI per region | changes | action (last: a failure's one-line reason may be long)."""
    header = ("recipe", "duration", "AMI per region", "changes", "action")
    rows = [(run.name, f"{run.seconds:.1f}s", ",".join(f"{r}:{a}" for r, a in run.amis.items()) or "-",
             run.changes or "-", run.action) for run in runs]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}  "
                     f"{row[4]}")
    return "\n".join(lines)


def failure_summary(runs: list[RecipeRun]) -> NightlyError | None:
    failed = [run.name for run in runs if not run.ok]
    if not failed:
        return None
    return NightlyError(f"{len(failed)} of {len(runs)} recipes failed: {', '.join(failed)} (see the table)")
