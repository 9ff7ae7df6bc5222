"""condor-seed command line (Invoke). Thin: parse flags, call the package, print results.

`invoke --list` shows every task; `invoke --help TASK` shows its flags.
"""
from __future__ import annotations

import sys
from pathlib import Path

from invoke import task

from condor_seed.cli import one_line_errors, progress

PROJECT = Path(__file__).resolve().parent


# ---------------------------------------------------------------- foundation: render and validate
@task(help={"recipe": "recipe name (see recipes/)", "out": "output folder (default: out/render/RECIPE)"})
@one_line_errors
def render(c, recipe, out=None):
    """Render a recipe's HTCondor config, boot scripts, units and bake script into a folder."""
    from condor_seed.recipe import load_recipe
    from condor_seed.render import render as render_tree

    loaded = load_recipe(recipe)
    target = Path(out or PROJECT / "out" / "render" / loaded.name)
    render_tree(loaded).write(target)
    print(target)


@task(help={"recipe": "one recipe, or a comma-separated list", "all": "validate every recipe (the default)"})
@one_line_errors
def validate(c, recipe=None, all=False):
    """Check recipes render, HTCondor's parser reads the expected values, scripts pass shellcheck."""
    from condor_seed.errors import ValidationError
    from condor_seed.recipe import load_recipes
    from condor_seed.validate import validate as validate_recipe

    recipes = load_recipes("all" if all or not recipe else recipe)
    failures = []
    for loaded in recipes:
        report = validate_recipe(loaded)
        passed = sum(ok for _, ok, _ in report.checks)
        print(f"{'ok  ' if report.ok else 'FAIL'} {loaded.name}: {passed}/{len(report.checks)} checks passed")
        failures += report.failures()
    if failures:
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        raise ValidationError(f"{len(failures)} check(s) failed")


@task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c, k=None, x=False):
    """Run the whole test suite (what CI runs)."""
    args = ["python", "-m", "pytest", "-ra"]
    if k:
        args += ["-k", repr(k)]
    if x:
        args.append("-x")
    c.run(" ".join(args), pty=False)


# ---- publish
def _regions_flag(regions):
    return [r.strip() for r in regions.split(",") if r.strip()] if regions else None


@task(help={
    "manifest": "the build manifest to publish from (its last build), e.g. out/manifests/rhel9-x86_64.json",
    "ami": "publish this AMI instead (needs --region; its scan and smoke results must be in a manifest)",
    "region": "with --ami: the region the AMI is in",
    "regions": "comma-separated target regions (default: the recipe's `regions`)",
    "dry_run": "print the plan and what the gate says; change nothing",
    "disable_block_public_access": "turn image block public access off where it is on, and wait until it reads unblocked",
    "poll_interval": "seconds between polls of copies and account settings (default 5)",
    "profile": "AWS profile (default: the standard credential chain)",
})
@one_line_errors
def publish_ami(c, manifest=None, ami=None, region=None, regions=None, dry_run=False,
                disable_block_public_access=False, poll_interval=None, profile=None):
    """Make a baked seed public in every target region: gate, copy, IMDSv2, deprecation, public, SSM parameter."""
    from condor_seed.aws.publish import publish_ami as run_publish
    from condor_seed.aws.session import Aws

    options = {"poll_interval": float(poll_interval)} if poll_interval else {}
    run_publish(Aws(profile=profile), manifest=manifest, ami=ami, region=region, regions=_regions_flag(regions),
                dry_run=dry_run, disable_block_public_access=disable_block_public_access, **options)


@task(help={
    "recipe": "the recipe whose seeds to rotate",
    "keep": "how many of the newest to keep (default: the recipe's publish.keep)",
    "regions": "comma-separated regions (default: the recipe's `regions`)",
    "dry_run": "print what would be made private or removed; change nothing",
    "profile": "AWS profile (default: the standard credential chain)",
})
@one_line_errors
def prune(c, recipe, keep=None, regions=None, dry_run=False, profile=None):
    """Rotate old seeds: keep the newest N and the announced one, make the rest private, deregister, delete snapshots."""
    from condor_seed.aws.prune import prune as run_prune
    from condor_seed.aws.session import Aws
    from condor_seed.recipe import load_recipe

    run_prune(Aws(profile=profile), load_recipe(recipe), regions=_regions_flag(regions),
              keep=int(keep) if keep is not None else None, dry_run=dry_run)


@task(name="list", help={
    "recipe": "the recipe whose seeds to show",
    "regions": "comma-separated regions (default: the recipe's `regions`)",
    "profile": "AWS profile (default: the standard credential chain)",
})
@one_line_errors
def list_seeds(c, recipe, regions=None, profile=None):
    """Show a recipe's seed images per region: id, date, public or not, deprecation, which one is latest."""
    from condor_seed.aws.inventory import format_table, inventory
    from condor_seed.aws.session import Aws
    from condor_seed.recipe import load_recipe

    loaded = load_recipe(recipe)
    wanted = _regions_flag(regions) or loaded.regions
    print(format_table(inventory(Aws(profile=profile), loaded, regions=wanted), wanted))
