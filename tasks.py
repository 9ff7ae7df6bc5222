"""condor-seed command line (Invoke). Thin: parse flags, call the package, print results.

`invoke --list` shows every task; `invoke --help TASK` shows its flags.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke import task

from condor_seed import flags
from condor_seed.cli import one_line_errors
from condor_seed.log import reporter

PROJECT = Path(__file__).resolve().parent


# ---------------------------------------------------------------- foundation: render and validate
@task(help={"recipe": "recipe name (see recipes/)", "out": "output folder (default: out/render/RECIPE)"})
@one_line_errors
def render(c, recipe, out=None):
    """Render a recipe's HTCondor config, boot scripts, units and bake script into a folder."""
    from condor_seed.recipe import load_recipe
    from condor_seed.render import render as render_tree

    out = flags.output_dir("--out", out)
    loaded = load_recipe(recipe)
    target = out or PROJECT / "out" / "render" / loaded.name
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
    from condor_seed.paths import tool_search_path

    # This interpreter (the project's venv) runs pytest, and its tools (shellcheck, zizmor) come first on PATH.
    args = [sys.executable, "-m", "pytest", "-ra"]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    c.run(shlex.join(args), pty=False, env={"PATH": tool_search_path()})


# ---- local target: a rootfs image and a real pool on this machine
def _build_local(recipe, force, mirror, cache_dir, out, keep_work):
    from condor_seed.local.build import build_local
    from condor_seed.pipeline import sigterm_as_interrupt

    with sigterm_as_interrupt():
        result = build_local(recipe=recipe, force=force, mirror=mirror, cache_dir=cache_dir,
                             out_dir=out, keep_work=keep_work)
    print(f"{result.recipe}\t{result.image}\t{result.manifest_path}")


def _smoke_local(recipe, out, keep_work):
    from condor_seed.local.smoke import smoke_test_local
    from condor_seed.pipeline import sigterm_as_interrupt
    from condor_seed.recipe import load_recipe

    with sigterm_as_interrupt():
        result = smoke_test_local(load_recipe(recipe), out_dir=out, keep_work=keep_work)
    print(f"{result.build_id}\tpassed {len(result.checks)} checks\t"
          + " ".join(f"{k}={v:.1f}s" for k, v in result.timings.items()))


# ---- AWS build
def _aws_region(aws, region):
    from condor_seed.errors import PreflightError

    region = region or aws.default_region()
    if not region:
        raise PreflightError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return region


@task(help={
    "region": "region to build in (default: AWS_REGION / your profile's region)",
    "recipe": "recipe, comma-separated recipes (built concurrently) or `all` (default rhel9-x86_64)",
    "profile": "AWS profile (default: the standard credential chain)",
    "base_ami": "start from this AMI instead of the newest matching RHEL image (it must be Red Hat's)",
    "allow_foreign_base": "let --base-ami be an image of another account than Red Hat's (you vouch for it)",
    "force": "replace an existing AMI of the same name (deregister it, delete its snapshots); local: a fresh base",
    "poll_interval": "seconds between state polls (default 5)",
    "timeout": "seconds each long wait (the bake, the image) may take (default 2700)",
    "target": "`local` bakes a root filesystem on this machine instead (recipes with target: local do so anyway)",
    "mirror": "local: Debian mirror URL (default: the one in this machine's apt sources)",
    "cache_dir": "local: where the pristine base is cached (default /var/cache/condor-seed)",
    "out": "local: output folder for images, manifests and work trees (default out/)",
    "keep_work": "local: keep the unpacked tree after the build (for debugging)",
})
@one_line_errors
def build_seed(c, region=None, recipe=None, profile=None, base_ami=None, force=False, poll_interval=None,
               timeout=None, target=None, mirror=None, cache_dir=None, out=None, keep_work=False,
               allow_foreign_base=False):
    """Bake recipes into AMIs on EC2 without SSH (or, with --target local, into a rootfs image here)."""
    from condor_seed.errors import RecipeError
    from condor_seed.recipe import load_recipes

    poll_interval = flags.positive_number("--poll-interval", poll_interval)
    timeout = flags.positive_number("--timeout", timeout)
    base_ami = flags.ami_id("--base-ami", base_ami)
    out = flags.output_dir("--out", out)
    recipes = load_recipes(recipe or ("debian13-local" if target == "local" else "rhel9-x86_64"))
    if recipe == "all" and target != "local":
        recipes = [r for r in recipes if r.target == "ec2"]
    if target == "local" or any(r.target == "local" for r in recipes):
        if target != "local" and any(r.target != "local" for r in recipes):
            raise RecipeError("build local and ec2 recipes in separate runs (or pass --target local)")
        for loaded in recipes:
            _build_local(loaded, force=force, mirror=mirror, cache_dir=cache_dir, out=out, keep_work=keep_work)
        return
    from condor_seed.aws.build import BuildOptions, build_recipes
    from condor_seed.aws.session import Aws

    if base_ami and len(recipes) > 1:
        raise RecipeError("--base-ami applies to one recipe; build the others separately")
    aws = Aws(profile=profile)
    opts = BuildOptions(region=_aws_region(aws, region), force=force, base_ami=base_ami,
                        allow_foreign_base=allow_foreign_base)
    opts.poll_interval = poll_interval or opts.poll_interval
    opts.timeout = timeout or opts.timeout
    for result in build_recipes(aws, recipes, opts):
        print(f"{result.recipe}\t{result.region}:{result.image_id}\t{result.manifest_path}")


@task(help={
    "region": "region of the AMI", "ami": "the AMI to boot", "profile": "AWS profile",
    "instance_type": "default: t3.large (x86_64) / t4g.large (arm64)",
    "poll_interval": "seconds between polls (default 5)", "timeout": "seconds to wait for the seed (default 900)",
    "target": "`local` boots the locally baked seed instead", "recipe": "with --target local: the recipe",
    "out": "local: the folder `build-seed --target local --out` wrote (default out/)",
    "keep_work": "local: keep the booted tree and its HTCondor logs afterwards",
})
@one_line_errors
def smoke_test(c, region=None, ami=None, profile=None, instance_type=None, poll_interval=None, timeout=None,
               target=None, recipe=None, out=None, keep_work=False):
    """Boot an AMI (IMDSv2, no inbound) and require the seed's boot and daemons-up console markers.

    With --target local: boot the last local image, join annex workers, run a job, all for real."""
    poll_interval = flags.positive_number("--poll-interval", poll_interval)
    timeout = flags.positive_number("--timeout", timeout)
    ami = flags.ami_id("--ami", ami)
    out = flags.output_dir("--out", out)
    if target == "local":
        _smoke_local(recipe or "debian13-local", out=out, keep_work=keep_work)
        return
    from condor_seed import manifest
    from condor_seed.aws.session import Aws
    from condor_seed.aws.smoke import smoke_test_and_record
    from condor_seed.errors import PreflightError

    if not ami:
        raise PreflightError("--ami is required (the image to boot)")
    aws = Aws(profile=profile)
    region = _aws_region(aws, region)
    options = {k: v for k, v in (("poll_interval", poll_interval), ("timeout", timeout)) if v}
    path, build = manifest.find_by_ami(region, ami) or (None, None)
    result = smoke_test_and_record(aws, region, ami, build=build, manifest_path=path, instance_type=instance_type,
                                   **options)
    print(f"passed\t{region}:{ami}\t{result.instance_id}")


@task(help={
    "region": "region to clean", "profile": "AWS profile",
    "older_than": "for leftovers without a readable expiry: runs started longer ago than this (default 6h); a run whose expiry is ahead is never touched",
    "dry_run": "only list what would be removed",
})
@one_line_errors
def cleanup(c, region=None, older_than="6h", dry_run=False, profile=None):
    """Remove instances, security groups, AMIs and snapshots that interrupted builds left (by tag)."""
    from condor_seed.aws.cleanup import cleanup as run_cleanup, parse_duration
    from condor_seed.aws.session import Aws

    older_than = parse_duration(older_than)
    aws = Aws(profile=profile)
    region = _aws_region(aws, region)
    found = run_cleanup(aws, region, older_than=older_than, dry_run=dry_run,
                        report=reporter("[cleanup] "))
    for item in found:
        print(f"{'would remove' if dry_run else 'removed'}\t{item.kind}\t{item.id}\t{item.build_id}")


@task(help={
    "region": "region to launch in (default: AWS_REGION / your profile's region)",
    "recipe": "whose newest published seed to start, from its SSM parameter (default rhel9-x86_64)",
    "ssh_cidr": "allow SSH from this network only, like 203.0.113.7/32 (0.0.0.0/0 only if you type it)",
    "key_name": "EC2 key pair to log in with (required with --ssh-cidr)",
    "collector_cidr": "who may reach HTCondor's port 9618 (default 0.0.0.0/0: annex workers, condor_annex's check)",
    "instance_type": "default: the recipe's instance_type",
    "setup_permissions": "--no-setup-permissions: the role cannot run `condor_annex -setup` (run it once as an admin)",
    "profile": "AWS profile (default: the standard credential chain)",
    "terminate": "remove launched seeds instead: instance, security group, instance profile, role (by tag)",
    "launch_id": "with --terminate: only this launch (default: every seed launched in the region)",
    "poll_interval": "seconds between polls (default 5)", "timeout": "seconds to wait for the instance (default 600)",
})
@one_line_errors
def launch_seed(c, region=None, recipe="rhel9-x86_64", ssh_cidr=None, key_name=None, collector_cidr=None,
                instance_type=None, setup_permissions=True, profile=None, terminate=False, launch_id=None,
                poll_interval=None, timeout=None):
    """Start the newest published seed with an instance role for condor_annex; --terminate removes it again."""
    from condor_seed.aws.launch_seed import LaunchOptions, access_options, launch_seed as start, terminate_seeds
    from condor_seed.aws.seed_network import is_anywhere
    from condor_seed.aws.session import Aws
    from condor_seed.recipe import load_recipe

    poll_interval = flags.positive_number("--poll-interval", poll_interval)
    timeout = flags.positive_number("--timeout", timeout)
    if terminate:
        aws = Aws(profile=profile)
        for launch in terminate_seeds(aws, _aws_region(aws, region), launch_id=launch_id):
            print(f"removed\t{launch}")
        return
    access = access_options(ssh_cidr, key_name, collector_cidr)  # before anything is created
    loaded = load_recipe(recipe)
    aws = Aws(profile=profile)
    options = LaunchOptions(region=_aws_region(aws, region), instance_type=instance_type,
                            setup_permissions=setup_permissions, **access)
    options.poll_interval = poll_interval or options.poll_interval
    options.timeout = timeout or options.timeout
    if access["ssh_cidr"] and is_anywhere(access["ssh_cidr"]):
        reporter()(f"WARNING: SSH is open to the whole internet ({access['ssh_cidr']}), as asked")
    result = start(aws, loaded, options)
    print(f"{result.launch_id}\t{result.region}:{result.instance_id}\t{result.public_dns or result.public_ip}")
    for line in result.how_to_use():
        print(line)


# ---- publish
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

    poll_interval = flags.positive_number("--poll-interval", poll_interval)
    options = {"poll_interval": poll_interval} if poll_interval else {}
    run_publish(Aws(profile=profile), manifest=manifest, ami=flags.ami_id("--ami", ami), region=region,
                regions=flags.regions("--regions", regions),
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

    keep = flags.positive_int("--keep", keep, maximum=5)
    loaded = load_recipe(recipe)
    wanted = flags.target_regions("--regions", regions, loaded)
    run_prune(Aws(profile=profile), loaded, regions=wanted, keep=keep, dry_run=dry_run)


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
    wanted = flags.target_regions("--regions", regions, loaded)
    print(format_table(inventory(Aws(profile=profile), loaded, regions=wanted), wanted))


# ---- freshness
@task(help={
    "recipe": "the recipe whose builds to compare",
    "build": "compare this build id with the one recorded before it (default: the newest build with an SBOM)",
    "out": "output folder holding manifests/ and sbom/ (default out/)",
    "short": "one line, as in the nightly table (e.g. `condor 24.0.12→24.0.13, 14 pkgs`)",
})
@one_line_errors
def changes(c, recipe, build=None, out=None, short=False):
    """What changed between a recipe's newest build and the one before: packages, HTCondor, base image."""
    from condor_seed.changes import recipe_changes
    from condor_seed.recipe import load_recipe

    out = flags.output_dir("--out", out)
    loaded = load_recipe(recipe)
    old, new, found = recipe_changes(loaded.name, out / "manifests" if out else None, build)
    if short:
        print(found.short())
        return
    print(f"{loaded.name}: {old['packer_run_uuid']} → {new['packer_run_uuid']}")
    print("\n".join(found.lines()))


# ---- nightly
@task(help={
    "recipe": "`all` (every EC2 recipe; local ones are skipped, the default) or comma-separated recipe names",
    "force": "rebuild, smoke-test and publish even the recipes whose published seed is up to date",
    "region": "region to build and smoke-test in (default: AWS_REGION / your profile's region)",
    "profile": "AWS profile (default: the standard credential chain)",
    "poll_interval": "seconds between state polls of builds, smoke tests and copies (default 5)",
    "htcondor_mirror": "read HTCondor repository metadata from this base URL instead of the recipes' repo_base "
                       "(also: CONDOR_SEED_HTCONDOR_MIRROR)",
})
@one_line_errors
def nightly(c, recipe="all", force=False, region=None, profile=None, poll_interval=None, htcondor_mirror=None):
    """Rebuild only what changed: build, smoke-test, publish and prune recipes whose fingerprint is new.

    The fingerprint holds the newest condor the HTCondor repository serves (a patch release rebuilds).
    A recipe whose published seed already has its fingerprint is "up to date" (no instance is
    launched), unless that seed is older than the recipe's max_age_days: then it is rebuilt and the new
    image kept only if its packages changed ("checked: unchanged" otherwise). Recipes run concurrently;
    prints a summary table (with what changed) and exits non-zero when any failed."""
    from condor_seed.aws.session import Aws
    from condor_seed.nightly import NightlyOptions, failure_summary, format_table, nightly as run_nightly, select_recipes

    poll_interval = flags.positive_number("--poll-interval", poll_interval)
    recipes = select_recipes(recipe)
    aws = Aws(profile=profile)
    opts = NightlyOptions(region=_aws_region(aws, region), force=force, htcondor_mirror=htcondor_mirror)
    opts.poll_interval = poll_interval or opts.poll_interval
    runs = run_nightly(aws, recipes, opts)
    print(format_table(runs), flush=True)
    failed = failure_summary(runs)
    if failed:
        raise failed
