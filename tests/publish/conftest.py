"""Fixtures for publish / prune / list: the `emulated` hook on the session the code under test uses
(see publish_helpers.Emulated)."""
from __future__ import annotations

import boto3
import pytest

from condor_seed.aws.session import Aws
from condor_seed.emulator.account import Emulated
from publish_helpers import disallowed


@pytest.fixture
def emulated(aws_env):
    """The session under test, recorded; at teardown every operation it made must be allowed by
    iam/builder-policy.json."""
    session = boto3.Session(region_name="us-east-1")
    em = Emulated(session)
    em.aws = Aws(session=session)  # what the code under test uses: recorded
    em.setup = Aws(session=boto3.Session(region_name="us-east-1"))  # what tests arrange and check with: not recorded
    yield em
    bad = disallowed(em.actions())
    assert not bad, f"iam/builder-policy.json does not allow operations publish/prune/list made: {bad}"
