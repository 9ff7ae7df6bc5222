"""Work-folder locks against a SIGKILL (no root needed: no mounts, no chroot)."""
from __future__ import annotations

import subprocess
import sys
import time

from condor_seed.local.workarea import reap_stale, work_area
from condor_seed.paths import PROJECT_DIR

# A run that keeps starting subprocesses (from threads, to widen the fork-to-exec window), as the
# smoke test does while its pool runs.
BUSY_RUN = """
import subprocess, sys, threading
from pathlib import Path
from condor_seed.local.workarea import work_area
def spawn():
    while True:
        subprocess.run(["true"])
with work_area(Path(sys.argv[1]), sys.argv[2]):
    for _ in range(3):
        threading.Thread(target=spawn, daemon=True).start()
    print("ready", flush=True)
    spawn()
"""


def test_a_sigkilled_run_is_reaped_at_once_even_mid_fork(tmp_path):
    """A child between fork and exec shares its parent's open files for a moment; the folder's lock
    must still die with the killed run (with flock, one of the first kills here already looked alive)."""
    for i in range(40):
        run = subprocess.Popen([sys.executable, "-c", BUSY_RUN, str(tmp_path), f"run-{i}"], cwd=PROJECT_DIR,
                               stdout=subprocess.PIPE, text=True)
        assert run.stdout.readline().strip() == "ready"
        time.sleep(0.005 * (i % 5))
        run.kill()
        run.wait()
        assert reap_stale(tmp_path) == [tmp_path / f"run-{i}"], f"kill {i}: the dead run's folder looked alive"
    assert not list(tmp_path.iterdir())


def test_a_live_run_is_not_reaped_even_by_its_own_process(tmp_path):
    with work_area(tmp_path, "live") as work:
        assert reap_stale(tmp_path) == [] and work.exists()
    assert not (tmp_path / "live").exists()
