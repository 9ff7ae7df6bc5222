"""The REAL condor_annex in the seed image, run as a login user against the emulator, makes exactly the
calls committed in iam/seed-instance-calls.json (which tests/aws/test_seed_policy.py holds the seed
instance policy to). How and what stands in: tests/local/annex_recorder.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from condor_seed.local.chroot import remove_tree
from condor_seed.local.rootfs import unpack_image
from condor_seed.paths import PROJECT_DIR

RECORDER = Path(__file__).with_name("annex_recorder.py")
COMMITTED = PROJECT_DIR / "iam" / "seed-instance-calls.json"


@pytest.fixture
def recording(local_out, tmp_path):
    image = next((local_out / "images").glob("*.tar.zst"))
    root = tmp_path / "root"
    unpack_image(image, root)
    try:
        # Its own network namespace: the collector it starts never touches the host's loopback, so it
        # needs no pool lock (and must not take it: test runs are often started under that lock).
        proc = subprocess.run(["unshare", "--net", sys.executable, str(RECORDER), str(root),
                               str(tmp_path / "recording.json"), str(tmp_path / "calls.json")],
                              capture_output=True, text=True, timeout=300)
        assert (tmp_path / "recording.json").exists(), proc.stderr[-3000:]
        yield json.loads((tmp_path / "recording.json").read_text()), tmp_path / "calls.json"
    finally:
        remove_tree(root)


@pytest.mark.root
def test_real_condor_annex_makes_the_committed_calls(recording):
    result, calls = recording
    for phase, out in result["outputs"].items():
        assert out["as_expected"], f"{phase}: {' '.join(out['argv'])} did not say {out['expected']!r}:\n{out['said']}"
    assert result["condor_annex"].startswith("23."), result["condor_annex"]
    # Every request came from condor_annex, signed with the user's key; no request moto could not name.
    assert result["signed_with"] == [result["user_key"]]
    assert not [a for actions in result["phases"].values() for a in actions if a.startswith("UNMAPPED")]
    # The only refusals are the RunInstances the rollback phase provokes (the gahp retries it).
    assert {e["action"] for e in result["failed_requests"]} == {"ec2:RunInstances"}
    committed = json.loads(COMMITTED.read_text())["phases"]
    assert result["phases"] == committed, (
        f"condor_annex's calls changed: review {calls} and copy it to {COMMITTED.relative_to(PROJECT_DIR)}, "
        "then update iam/seed-instance-policy.json")
