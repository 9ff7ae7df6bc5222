"""The commands as a user runs them (`python -m invoke ...` in a subprocess pointed at the emulator):
bad input ends with one line and a non-zero exit, and creates nothing; SIGTERM undoes a build."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from condor_seed.emulator.aws import private_recipe, sigterm_during_bake

PROJECT = Path(__file__).resolve().parents[2]


def invoke(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc, code: int, text: str):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], proc.stderr


@pytest.fixture
def no_credentials(aws_env, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to find here
    return dict(os.environ)


def test_missing_credentials(emu, no_credentials):
    proc = invoke("build-seed", "--region", "us-east-1", env=no_credentials)
    one_line_error(proc, 3, "no AWS credentials found")
    assert emu.leaks() == {}


def test_unknown_profile(emu):
    one_line_error(invoke("build-seed", "--region", "us-east-1", "--profile", "nope"), 3, "AWS profile 'nope' not found")


@pytest.mark.parametrize("region, text", [("moon", "'moon' is not an AWS region name"),
                                          ("xx-fake-9", "unknown AWS region 'xx-fake-9'")])
def test_bad_region(emu, region, text):
    one_line_error(invoke("build-seed", "--region", region), 3, text)
    assert emu.leaks() == {}


def test_bad_recipe(emu):
    one_line_error(invoke("build-seed", "--region", "us-east-1", "--recipe", "rhel9-x86_64,nope"), 2,
                   "nope.yaml: no such recipe")
    assert emu.leaks() == {}


def test_cleanup_with_nothing_to_do(emu):
    proc = invoke("cleanup", "--region", "us-east-1", "--dry-run")
    assert proc.returncode == 0 and "nothing to clean up in us-east-1" in proc.stderr


def test_sigterm_during_the_bake_undoes_everything(emu, tmp_path):
    emu.guest.mode = "hang"
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "build-seed", "--region", "us-east-1", "--recipe",
         str(private_recipe(tmp_path / "recipes", PROJECT)), "--poll-interval", "0.05"],
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = sigterm_during_bake(proc)
    assert proc.returncode == 130, err
    assert "bake: failed (terminated (SIGTERM))" in err and "terminated builder" in err
    assert "deleted security group" in err
    assert emu.leaks() == {}
