"""Helpers for the nightly tests: a guest that fails chosen recipes' bakes, and the test's view of AWS."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from condor_seed.emulator.aws import GuestSimulator
from condor_seed.aws.session import Aws
from condor_seed.aws.tags import tag_dict
from condor_seed.nightly import NightlyOptions, RecipeRun, nightly, select_recipes
from condor_seed.render import MARKERS


@dataclass
class RecipeGuest(GuestSimulator):
    """The AWS tests' guest, except that the recipes in `failing` fail their bake (FAILED marker, no power-off)."""

    failing: set[str] = field(default_factory=set)

    def _bake(self, instance, script: str):
        match = re.search(r'"\$MARKER SUCCESS recipe=(\S+) scan=clean"', script)
        if not match or match.group(1) not in self.failing:
            return super()._bake(instance, script)
        self.seen[instance.id] = f"bake {match.group(1)} (fail)"
        self.console[instance.id] = f"{MARKERS['bake']} FAILED recipe={match.group(1)} line=42 exit=1\n"


@dataclass
class Night:
    aws: Aws  # what nightly uses: recorded, gaps answered
    setup: Aws  # what tests arrange and check with
    emulated: object  # publish_helpers.Emulated
    guest: RecipeGuest
    bases: dict[str, str]
    tmp_path: Path
    repo: object = None  # fixture_repo.FixtureRepo: the HTCondor repositories
    last_end: float = 0.0

    def options(self, **overrides) -> NightlyOptions:
        values = dict(region="us-east-1", poll_interval=0.02, build_timeout=20.0, smoke_timeout=20.0,
                      console_every=0.05, report_every=0.5, manifest_dir=self.tmp_path / "manifests")
        return NightlyOptions(**(values | overrides))

    def run(self, recipes: str = "rhel9-x86_64", **overrides) -> dict[str, RecipeRun]:
        """One nightly; the call record starts afresh (earlier calls still go to the IAM check)."""
        self.emulated.forget()
        # AMI names carry the build's start to the second (a real build takes minutes); against the
        # emulator two nightlies can build one recipe in the same second: start in a later second.
        time.sleep(max(0.0, int(self.last_end) + 1 - time.time()))
        try:
            runs = nightly(self.aws, select_recipes(recipes), self.options(**overrides))
        finally:
            self.last_end = time.time()
        return {run.name: run for run in runs}

    def count(self, operation: str) -> int:
        return len(self.emulated.ops(operation=operation))

    def image(self, region: str, image_id: str) -> dict:
        return self.setup.ec2(region).describe_images(ImageIds=[image_id])["Images"][0]

    def tags(self, region: str, image_id: str) -> dict[str, str]:
        return tag_dict(self.image(region, image_id).get("Tags"))

    def live_instances(self) -> list[str]:
        reservations = self.setup.ec2("us-east-1").describe_instances()["Reservations"]
        return [i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] != "terminated"]
