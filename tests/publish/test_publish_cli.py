"""The Invoke tasks, run as a user runs them, against the emulator (only calls it has)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from publish_helpers import PARAMETER, make_seed

PROJECT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)


def test_list_and_prune_dry_run_from_the_command_line(emulated):
    image_id = make_seed(emulated.setup, public=True)
    emulated.setup.ssm("us-east-1").put_parameter(Name=PARAMETER, Value=image_id, Type="String",
                                                  DataType="aws:ec2:image", Overwrite=True)
    listed = invoke("list", "--recipe", "rhel9-x86_64", "--regions", "us-east-1,us-west-2")
    assert listed.returncode == 0, listed.stderr
    assert image_id in listed.stdout and "latest" in listed.stdout and "us-west-2: no seed images" in listed.stdout

    pruned = invoke("prune", "--recipe", "rhel9-x86_64", "--keep", "1", "--regions", "us-east-1", "--dry-run")
    assert pruned.returncode == 0, pruned.stderr
    assert f"keep         {image_id}" in pruned.stdout


def test_publish_needs_a_source(emulated):
    result = invoke("publish-ami")
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == "error: give either --manifest PATH or --ami ID --region R"
    missing = invoke("publish-ami", "--manifest", "/nonexistent/m.json")
    assert missing.returncode != 0 and "no such manifest" in missing.stderr
