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
