"""Fixtures for `invoke nightly` against the emulator: the AWS tests' guest simulator (which bakes,
boots the seed, and here can fail one recipe's bake), the publish tests' `Emulated` hook on the
session under test (records every call; answers image block public access and EnableImageDeprecation,
which the emulator lacks), and at teardown: every operation allowed by iam/builder-policy.json."""
from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "aws"), str(TESTS / "publish")]  # iam_policy, publish_helpers

from condor_seed.emulator.htcondor_repo import FixtureRepo  # noqa: E402
from nightly_helpers import Night, RecipeGuest  # noqa: E402

# The HTCondor repositories the EC2 recipes install from, as the local fixture server serves them.
UPSTREAM = {("24.0", "9", "x86_64"): "24.0.12", ("24.0", "9", "aarch64"): "24.0.12", ("24.0", "8", "x86_64"): "24.0.12",
            ("25.0", "9", "x86_64"): "25.0.4"}


@pytest.fixture
def htcondor_repo(tmp_path, monkeypatch):
    """Every nightly (and `invoke nightly` subprocess) reads repository metadata from the local server;
    its cache lives in the test's folder."""
    from condor_seed.upstream import MIRROR_ENV

    with FixtureRepo(tmp_path / "htcondor-repo") as repo:
        for (series, el, arch), version in UPSTREAM.items():
            repo.publish(series, el, arch, [version])
        monkeypatch.setenv(MIRROR_ENV, repo.url)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        yield repo


@pytest.fixture
def night(aws_env, monkeypatch, tmp_path, htcondor_repo):
    from condor_seed.emulator.aws import add_rhel_images, patch_console_output
    from condor_seed.aws.session import Aws
    from condor_seed.emulator.account import Emulated
    from publish_helpers import disallowed

    bases = add_rhel_images("us-east-1")
    session = boto3.Session(region_name="us-east-1")
    emulated = Emulated(session)
    guest = RecipeGuest(aws_env).start()
    patch_console_output(monkeypatch, guest.console)
    setup = Aws(session=boto3.Session(region_name="us-east-1"))  # arrange and check: not recorded
    yield Night(Aws(session=session), setup, emulated, guest, bases, tmp_path, repo=htcondor_repo)
    guest.stop()
    bad = disallowed(emulated.actions())
    assert not bad, f"iam/builder-policy.json does not allow operations nightly made: {bad}"
