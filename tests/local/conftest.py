"""The local target needs root and debootstrap. On a user's machine without them these tests skip;
CI sets CONDOR_SEED_REQUIRE_ROOT=1, which turns the skip into a failure."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from condor_seed.paths import PROJECT_DIR


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("debootstrap", "zstd", "curl"):
        if not shutil.which(tool):
            return f"needs {tool}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if not reason:
        return
    for item in items:
        if "tests/local/" in str(item.fspath) and item.get_closest_marker("root"):
            if os.environ.get("CONDOR_SEED_REQUIRE_ROOT") == "1":
                item.add_marker(pytest.mark.usefixtures("_required_but_missing"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"local target: {reason} (CI makes this mandatory)"))


@pytest.fixture
def _required_but_missing():
    pytest.fail(f"CONDOR_SEED_REQUIRE_ROOT=1 but the local target {_missing()}")


def invoke(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                          **kwargs)


@pytest.fixture(name="invoke")
def invoke_fixture():
    """Run an Invoke task as a user would (a subprocess of this checkout)."""
    return invoke


def _build(tmp_path_factory, *recipe_args: str):
    if _missing():
        if os.environ.get("CONDOR_SEED_REQUIRE_ROOT") == "1":
            pytest.fail(f"CONDOR_SEED_REQUIRE_ROOT=1 but the local target {_missing()}")
        pytest.skip(f"local target: {_missing()}")
    out = tmp_path_factory.mktemp("local-out")
    proc = invoke("build-seed", "--target", "local", *recipe_args, "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def local_out(tmp_path_factory):
    """One real local build (the default recipe, debian13-local) shared by the tests that only read its result."""
    return _build(tmp_path_factory)


@pytest.fixture(scope="session")
def sid_out(tmp_path_factory):
    """One real local build of debian-sid-local (HTCondor 25.x, `htcondor annex`)."""
    return _build(tmp_path_factory, "--recipe", "debian-sid-local")
