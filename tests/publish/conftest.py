"""Fixtures for publish / prune / list: the `emulated` hook on the session the code under test uses
(see publish_helpers.Emulated)."""
from __future__ import annotations

import boto3
import pytest

from condor_seed.aws.session import Aws
from publish_helpers import Emulated


@pytest.fixture
def emulated(aws_env):
    session = boto3.Session(region_name="us-east-1")
    em = Emulated(session)
    em.aws = Aws(session=session)  # what the code under test uses: recorded
    em.setup = Aws(session=boto3.Session(region_name="us-east-1"))  # what tests arrange and check with: not recorded
    return em
