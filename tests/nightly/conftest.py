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

from nightly_helpers import Night, RecipeGuest  # noqa: E402


@pytest.fixture
def night(aws_env, monkeypatch, tmp_path):
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
    yield Night(Aws(session=session), setup, emulated, guest, bases, tmp_path)
    guest.stop()
    bad = disallowed(emulated.actions())
    assert not bad, f"iam/builder-policy.json does not allow operations nightly made: {bad}"
