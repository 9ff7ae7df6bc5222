"""Rotation: keep the newest N seeds of a recipe (and whatever its SSM parameter points to), make the
rest private, deregister them and delete their snapshots; never leave more than the public-AMI quota
(5 per region by default) public.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..log import progress
from ..errors import PruneError
from ..recipe import Recipe
from .catalog import aws_errors, make_private, recipe_images, retire, ssm_value
from .session import Aws

PUBLIC_QUOTA = 5  # public AMIs per region, AWS default


@dataclass
class Decision:
    image: dict
    action: str  # "keep", "make-private", "delete"
    reason: str

    @property
    def image_id(self) -> str:
        return self.image["ImageId"]


@dataclass
class RegionPlan:
    region: str
    decisions: list[Decision] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not self.decisions:
            return [f"{self.region}: no seed images"]
        return [
            f"{self.region}: {d.action:<12} {d.image_id}  {d.image.get('CreationDate', '?')}  ({d.reason})"
            for d in self.decisions
        ]


def plan_region(ec2, ssm, recipe: Recipe, region: str, *, keep: int, quota: int = PUBLIC_QUOTA,
                protect: tuple[str, ...] = (), becoming_public: tuple[str, ...] = ()) -> RegionPlan:
    """Decide, without changing anything, what happens to each of the recipe's images in a region.

    `protect`: images never touched (the one being published); `becoming_public`: images that will be
    public once this run finishes, so they count against the quota already."""
    pointer = ssm_value(ssm, recipe.ssm_parameter())
    images = recipe_images(ec2, recipe.name)  # newest first
    newest = {i["ImageId"] for i in [i for i in images if i["ImageId"] in protect or i.get("State") == "available"][:keep]}
    plan = RegionPlan(region)
    public_left = quota
    # The public budget goes to the image being published, then the SSM-pointed one, then the newest.
    for image in sorted(images, key=lambda i: (i["ImageId"] not in protect, i["ImageId"] != pointer)):
        image_id = image["ImageId"]
        if image_id in protect:
            reason = "being published"
        elif image_id == pointer:
            reason = f"{recipe.ssm_parameter()} points to it"
        elif image.get("State") != "available":
            reason = f"state {image.get('State')}: not touched"
        elif image_id in newest:
            reason = f"one of the newest {keep}"
        else:
            plan.decisions.append(Decision(image, "delete", f"older than the newest {keep}"))
            continue
        if image.get("Public") or image_id in becoming_public:
            if public_left <= 0 and image_id not in protect and image_id != pointer:
                plan.decisions.append(Decision(image, "make-private", f"{reason}, but over the quota of {quota} public"))
                continue
            public_left -= 1
        plan.decisions.append(Decision(image, "keep", reason))
    plan.decisions.sort(key=lambda d: (d.image.get("CreationDate", ""), d.image_id), reverse=True)
    return plan


def apply_plan(ec2, plan: RegionPlan) -> list[str]:
    """Carry out a plan; returns problems (as text) instead of stopping at the first one."""
    problems = []
    for decision in plan.decisions:
        if decision.action == "keep":
            continue
        try:
            if decision.action == "make-private":
                progress(f"making {decision.image_id} private ({decision.reason})", prefix=f"{plan.region}: ")
                make_private(ec2, decision.image)
            else:
                progress(f"removing {decision.image_id} ({decision.reason})", prefix=f"{plan.region}: ")
                retire(ec2, decision.image)
        except Exception as exc:  # noqa: BLE001 - reported with the region, the rest still runs
            problems.append(f"{plan.region}: {decision.image_id}: {exc}")
    return problems


def prune(aws: Aws, recipe: Recipe, *, regions: list[str] | None = None, keep: int | None = None,
          quota: int = PUBLIC_QUOTA, dry_run: bool = False) -> list[RegionPlan]:
    keep = recipe.keep if keep is None else keep
    if keep < 1:
        raise PruneError(f"--keep must be at least 1 (got {keep})")
    plans, problems = [], []
    regions = regions or recipe.regions
    aws.caller_identity(regions[0])
    for region in regions:
        with aws_errors(f"prune {recipe.name} in {region}", PruneError):
            plan = plan_region(aws.ec2(region), aws.ssm(region), recipe, region, keep=keep, quota=quota)
        plans.append(plan)
        for line in plan.lines():
            print(("(dry run) " if dry_run else "") + line)
        if not dry_run:
            problems += apply_plan(aws.ec2(region), plan)
    if problems:
        raise PruneError("prune left work undone: " + "; ".join(problems))
    return plans
