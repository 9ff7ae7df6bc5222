"""The `--dry-run` plan and the run come from one list of steps (publish_steps.region_steps), so the plan
says exactly what a run would change. Against the emulator; mocked (the emulator lacks them): image block
public access and EnableImageDeprecation. The emulator drops DeprecationTime and
Description, so those steps stay "needed" on every run here, in the plan and in the run alike."""
from __future__ import annotations

import time

from condor_seed.aws.publish import publish_ami
from condor_seed.aws.publish_steps import region_steps

from publish_helpers import PARAMETER, REGIONS, make_seed, write_manifest

FAST = {"poll_interval": 0.01}
# The mutating calls each step makes (the prune step makes none while nothing is old enough to rotate).
STEP_CALLS = {"description": "ModifyImageAttribute",
              "tags on image and snapshots": "CreateTags", "deprecate at": "EnableImageDeprecation",
              "launch permission Group=all": "ModifyImageAttribute", f"SSM {PARAMETER}": "PutParameter"}


def plan_steps(out: str) -> dict[str, list[str]]:
    """region -> the step words after `then` in the printed plan."""
    found = {}
    for line in out.splitlines():
        region, _, rest = line.removeprefix("(dry run) ").partition(":   then ")
        if rest:
            found[region] = [] if rest == "nothing (done)" else rest.split(", ")
    return found


def calls_of(steps: list[str]) -> list[str]:
    return sorted(call for step in steps for key, call in STEP_CALLS.items() if step.startswith(key))


def test_the_plan_of_a_rerun_lists_only_what_the_rerun_changes(emulated, tmp_path, capsys):
    source = make_seed(emulated.setup)
    path = write_manifest(tmp_path, source, build_time=int(time.time()))
    publish_ami(emulated.aws, manifest=path, **FAST)
    capsys.readouterr()

    publish_ami(emulated.aws, manifest=path, dry_run=True, **FAST)
    planned = plan_steps(capsys.readouterr().out)
    assert list(planned) == REGIONS
    for region in REGIONS:  # public and announced already: the plan must not repeat them
        assert not any(s.startswith(("launch permission", "SSM")) for s in planned[region]), planned[region]

    emulated.forget()
    publish_ami(emulated.aws, manifest=path, **FAST)
    for region in REGIONS:
        made = sorted(c.operation for c in emulated.ops(region) if c.operation in set(STEP_CALLS.values()))
        assert made == calls_of(planned[region]), region


def test_the_first_plan_lists_every_step_in_run_order(emulated, tmp_path, capsys):
    source = make_seed(emulated.setup)
    path = write_manifest(tmp_path, source, build_time=int(time.time()))
    publish_ami(emulated.aws, manifest=path, dry_run=True, **FAST)
    planned = plan_steps(capsys.readouterr().out)
    order = [step.name for step in region_steps()]
    assert order[-2:] == ["public", "SSM parameter"]  # public only once all else is right; then announce it
    for region in REGIONS:
        words = planned[region]
        assert words[0] == "description" and words[-2:] == ["launch permission Group=all", f"SSM {PARAMETER}"]
        assert "prune" in words
