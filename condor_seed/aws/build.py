"""`invoke build-seed`: bake a recipe on an EC2 instance (no SSH) and turn it into a tagged AMI.

preflight -> base image -> security group -> builder (user data = bake script) -> wait for power-off
and the success marker -> create_image -> image exists / available (snapshots tagged at creation), IMDSv2 ->
terminate builder -> delete security group -> manifest. Every step undoes itself in reverse when a
later one fails or the run is interrupted (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import manifest, sbom
from ..log import progress, reporter
from ..errors import SeedError
from ..fingerprint import fingerprint
from ..packages import PackageList, read_report
from ..pipeline import Cancelled, Pipeline, Step, cancellable_sleep, sigterm_as_interrupt
from ..recipe import Recipe
from ..render import MARKERS, RenderedTree, render
from ..userdata import encode_user_data
from . import images, instances
from .lifecycle import InstanceLifecycle, LaunchSpec
from .base_image import BaseImage, describe_base_image, find_base_image
from .preflight import preflight
from .session import Aws
from .tags import (BASE_AMI_TAG, BUILD_ID_TAG, EXPIRES_TAG, FINGERPRINT_TAG, HTCONDOR_TAG, NAME_TAG, PACKAGES_TAG,
                   RECIPE_TAG, ROLE_TAG, SBOM_TAG, build_filter, utc_iso)
from .waiters import DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT, REPORT_EVERY, Poller, fmt_seconds


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class BuildOptions:
    region: str
    force: bool = False
    base_ami: str | None = None
    allow_foreign_base: bool = False  # --base-ami may belong to another account than the recipe's base owner
    poll_interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = DEFAULT_TIMEOUT  # for each long wait: the bake, the image
    console_every: float = 30.0  # read the console this often while the guest runs
    report_every: float = REPORT_EVERY
    manifest_dir: Path | None = None  # SBOMs go to its sibling `sbom/`
    # The condor version-release the fingerprint holds (nightly's upstream check); None: the recipe's series.
    condor_version: str | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = utcnow


@dataclass
class BuildResult:
    """What a build hands the next stage (smoke test, publish): the image, its recipe and its record."""

    recipe: str
    build_id: str
    region: str
    image_id: str
    manifest_path: Path
    build: dict  # the manifest entry (also written to manifest_path)
    seconds: float
    spec: Recipe | None = None  # the Recipe itself (`recipe` is its name)

    fingerprint = property(lambda self: self.build["custom_data"]["fingerprint"])


def secret_scan_result(tags: dict[str, str]) -> str:
    """The secret scan of an image, from its tags: an image is only ever created after the guest printed
    `SUCCESS … scan=clean` (wait_bake returns on nothing else), so a finished image of ours (build id,
    no expiry) passed it."""
    return "passed" if tags.get(BUILD_ID_TAG) and EXPIRES_TAG not in tags else "not-run"


def plan_content(ec2, recipe: Recipe, base_ami: str | None = None, tree: RenderedTree | None = None,
                 condor_version: str | None = None, allow_foreign_base: bool = False) -> tuple[BaseImage, str]:
    """The base image a build starts from (`base_ami`, else the newest matching one) and the content
    fingerprint it will tag (with `condor_version`, the upstream condor, when known): read-only, so
    nightly asks the same question before deciding to build."""
    base = (describe_base_image(ec2, base_ami, recipe, allow_foreign_base) if base_ami
            else find_base_image(ec2, recipe))
    return base, fingerprint(tree or render(recipe), base.image_id, condor_version)


def new_build_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


@dataclass
class Build:
    """One recipe's build; the attributes fill in as steps run (and tell undo what exists)."""

    aws: Aws
    recipe: Recipe
    opts: BuildOptions
    report: Callable[[str], None]
    sleep: Callable[[float], None] | None = None
    started: dt.datetime = field(init=False)
    build_id: str = field(init=False)
    ami_name: str = field(init=False)
    ec2: object = field(init=False)  # the build region's client
    poller: Poller = field(init=False)
    tree: RenderedTree = field(init=False)  # the recipe rendered once: bake script and fingerprint
    builder: InstanceLifecycle = field(init=False)
    base: BaseImage | None = None
    fingerprint: str = ""
    user_data: bytes = b""
    collisions: list[dict] = field(default_factory=list)
    image_id: str | None = None
    image: dict | None = None
    console: str = ""
    packages: PackageList | None = None  # what the guest reported installed
    sbom: sbom.Sbom | None = None
    sbom_data: dict[str, str] = field(default_factory=dict)  # what the manifest records about the SBOM
    manifest_path: Path | None = None
    build: dict | None = None

    def __post_init__(self):
        self.started = self.opts.now()
        self.build_id = new_build_id(self.started)
        self.ami_name = self.recipe.ami_name(self.started.strftime("%Y%m%d-%H%M%S"))
        self.ec2 = self.aws.ec2(self.opts.region)
        self.poller = Poller(interval=self.opts.poll_interval, timeout=self.opts.timeout,
                             sleep=self.sleep or self.opts.sleep, clock=self.opts.clock, report=self.report,
                             report_every=self.opts.report_every)
        self.tree = render(self.recipe)
        self.builder = InstanceLifecycle(
            self.ec2, self.build_id, role="builder", poller=self.poller, report=self.report,
            tags=lambda: self.tags("builder", f"condor-seed builder {self.recipe.name}"),
            group_name=f"condor-seed-build-{self.build_id}",
            group_description=f"condor-seed builder {self.recipe.name} {self.build_id}: no inbound rules")

    instance_id = property(lambda self: self.builder.instance_id)
    group_id = property(lambda self: self.builder.group_id)

    # ------------------------------------------------------------------ tags
    def tags(self, role: str, name: str, finished: bool = False) -> dict[str, str]:
        tags = dict(self.recipe.tags)
        tags.update({
            NAME_TAG: name,
            RECIPE_TAG: self.recipe.name,
            BUILD_ID_TAG: self.build_id,
            FINGERPRINT_TAG: self.fingerprint,
            BASE_AMI_TAG: self.base.image_id if self.base else "",
            ROLE_TAG: role,
            HTCONDOR_TAG: self.opts.condor_version or self.recipe.htcondor_series,
        })
        if role == "image" and self.sbom:
            tags.update({SBOM_TAG: self.sbom.sha256, PACKAGES_TAG: self.packages.digest})
        if not finished:
            # Long enough for both waits and the clean-up; the janitor removes what outlives it.
            tags[EXPIRES_TAG] = utc_iso(self.started + dt.timedelta(seconds=2 * self.opts.timeout + 3600))
        return tags

    # ------------------------------------------------------------------ steps
    def steps(self) -> list[Step]:
        return [
            Step("preflight", self.preflight),
            Step("base image", self.find_base),
            *self.builder.steps(
                self.launch_spec, wait=Step("bake", self.wait_bake), launch_name="launch builder",
                note=f"; waiting for the bake (timeout {fmt_seconds(self.opts.timeout)})",
                # --force: the old AMI goes only once the bake succeeded, just before the new one is
                # created (AWS keeps AMI names unique per region, so it cannot wait any longer).
                while_up=[Step("SBOM", self.write_sbom, self.delete_sbom),
                          Step("remove the colliding AMI (--force)", self.remove_collisions),
                          Step("create image", self.create_image, self.delete_image),
                          Step("wait for image", self.wait_image)]),
            Step("manifest", self.write_manifest),
        ]

    def preflight(self):
        result = preflight(self.aws, self.opts.region, self.recipe, self.ami_name, force=self.opts.force,
                           report=self.report)
        self.collisions = result.collisions
        self.user_data = encode_user_data(self.tree.bake_script.content)

    def remove_collisions(self):
        for image in self.collisions:
            removed = images.delete_image(self.ec2, image["ImageId"], image)
            self.report(f"--force: removed {', '.join(removed) or image['ImageId']} (AMI named {self.ami_name!r})")

    def find_base(self):
        self.base, self.fingerprint = plan_content(self.ec2, self.recipe, self.opts.base_ami, self.tree,
                                                   self.opts.condor_version, self.opts.allow_foreign_base)
        self.report(f"base image {self.base.image_id} ({self.base.name}, {self.base.creation_date}); "
                    f"fingerprint {self.fingerprint[:19]}…; build id {self.build_id}")

    def launch_spec(self) -> LaunchSpec:
        """Called when the launch runs: the base image and the user data are known by then."""
        return LaunchSpec(image_id=self.base.image_id, instance_type=self.recipe.instance_type,
                          client_token=f"condor-seed-{self.build_id}-builder", user_data=self.user_data,
                          root_device=self.base.root_device_name, root_volume=self.recipe.root_volume)

    def wait_bake(self):
        self.console = instances.wait_for_bake(self.ec2, self.instance_id, marker=MARKERS["bake"],
                                               recipe=self.recipe.name, poller=self.poller,
                                               console_every=self.opts.console_every)
        self.report("bake succeeded: the guest reported success, a clean secret scan, and powered off")
        self.packages = read_report(self.console, MARKERS["bake"])

    def write_sbom(self):
        out_dir = (self.opts.manifest_dir or manifest.MANIFEST_DIR).parent
        self.sbom, self.sbom_data = sbom.record(
            self.packages, out_dir, recipe_name=self.recipe.name, build_id=self.build_id,
            distro=f"{self.recipe.os_family}-{self.recipe.os_version}",
            htcondor_version=self.installed_htcondor_version(), built_at=self.started)
        self.report(f"SBOM: {self.sbom.components} packages in {self.sbom.path} (sha256 {self.sbom.sha256[:12]}…)")

    def delete_sbom(self):
        if self.sbom:
            self.sbom.path.unlink(missing_ok=True)
            self.sbom = None

    def create_image(self):
        self.image_id = images.create_image(self.ec2, self.instance_id, self.ami_name,
                                            self.recipe.ami_description(), self.tags("image", self.ami_name))
        self.report(f"creating image {self.image_id} ({self.ami_name})")

    def delete_image(self):
        known = [self.image_id] if self.image_id else []
        found = [i["ImageId"] for i in images.find_images(self.ec2, build_filter(self.build_id))]
        for image_id in dict.fromkeys(known + found):
            removed = images.delete_image(self.ec2, image_id)
            if removed:
                self.report(f"removed {', '.join(removed)}")
        self.image_id = None

    def wait_image(self):
        self.image = images.finish_image(self.ec2, self.image_id, self.poller)
        self.report(f"image {self.image_id} available; snapshots tagged at creation")

    def installed_htcondor_version(self) -> str:
        """What the bake script reported installing (`… htcondor-version=24.0.5`), else the recipe's series."""
        found = re.findall(rf"{re.escape(MARKERS['bake'])} htcondor-version=(\d[\w.\-]*)", self.console)
        return found[-1] if found else self.recipe.htcondor_series

    def write_manifest(self):
        self.build = manifest.new_build(
            recipe=self.recipe.name, build_id=self.build_id, region_amis={self.opts.region: self.image_id},
            build_time=int(self.opts.now().timestamp()),
            custom_data={
                "recipe": self.recipe.name,
                "fingerprint": self.fingerprint,
                "base_ami": self.base.image_id,
                "base_ami_name": self.base.name,
                "base_ami_date": self.base.creation_date,
                "htcondor_version": self.installed_htcondor_version(),
                "build_id": self.build_id,
                "ami_name": self.ami_name,
                "secret_scan": secret_scan_result(self.tags("image", self.ami_name, finished=True)),
                "smoke_test": "not-run",
                "encrypted": "true" if images.encrypted(self.image) else "false",
                "htcondor_fingerprint": self.opts.condor_version or self.recipe.htcondor_series,
                **self.sbom_data,
            },
        )
        images.mark_finished(self.ec2, self.image)
        self.manifest_path = manifest.append_build(manifest.path_for(self.recipe.name, self.opts.manifest_dir),
                                                   self.build)

    def bake_image(self) -> BuildResult:
        """Run every step (undoing them on failure); the finished image, tagged and recorded."""
        start = self.opts.clock()
        Pipeline(report=self.report).run(self.steps())
        seconds = self.opts.clock() - start
        self.report(f"done in {fmt_seconds(seconds)}: {self.opts.region}:{self.image_id}; manifest {self.manifest_path}")
        return BuildResult(self.recipe.name, self.build_id, self.opts.region, self.image_id, self.manifest_path,
                           self.build, seconds, self.recipe)


def build_recipe(aws: Aws, recipe: Recipe, opts: BuildOptions, report: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None) -> BuildResult:
    report = report or reporter(f"[{recipe.name}] ")
    return Build(aws, recipe, opts, report, sleep).bake_image()


def build_recipes(aws: Aws, recipes: list[Recipe], opts: BuildOptions) -> list[BuildResult]:
    """Build one recipe in this thread, several concurrently (one prefixed log stream each).

    Ctrl-C or SIGTERM reaches the main thread; it tells every build to stop, and each undoes its
    own steps before this returns (by raising the interrupt).
    """
    with sigterm_as_interrupt():
        if len(recipes) == 1:
            return [build_recipe(aws, recipes[0], opts)]
        futures = run_concurrently([functools.partial(build_recipe, aws, recipe, opts, None) for recipe in recipes],
                                   opts.sleep, "build")
        results, failures = [], []
        for future, recipe in zip(futures, recipes):
            try:
                results.append(future.result())
            except Cancelled:
                failures.append(f"{recipe.name} (cancelled)")
            except Exception as exc:  # each build already reported its own failure in full
                failures.append(f"{recipe.name} ({exc})")
        if failures:
            raise SeedError(f"{len(failures)} of {len(recipes)} builds failed: {'; '.join(failures)}")
        return results


def run_concurrently(jobs: list[Callable[[Callable[[float], None]], object]], sleep: Callable[[float], None],
                     name: str) -> list[concurrent.futures.Future]:
    """Run each `job(sleep)` in its own thread and wait for all. Ctrl-C (or SIGTERM, under
    `sigterm_as_interrupt`) in the main thread makes every job's sleep raise `Cancelled`, waits while
    each undoes its own steps, then re-raises the interrupt."""
    cancel = threading.Event()
    cancellable = cancellable_sleep(cancel, sleep)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix=name) as pool:
        futures = [pool.submit(job, cancellable) for job in jobs]
        try:
            concurrent.futures.wait(futures)
        except KeyboardInterrupt:
            progress(f"interrupted: stopping every {name} job and undoing what each created")
            cancel.set()
            _wait_quietly(futures)
            raise
    return futures


def _wait_quietly(futures) -> None:
    """Wait for the workers' clean-up; a second Ctrl-C is noted, not obeyed."""
    while True:
        try:
            concurrent.futures.wait(futures)
            return
        except KeyboardInterrupt:
            progress("still cleaning up, please wait")
