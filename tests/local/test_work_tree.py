"""Work folders keep their root filesystem in memory (a tmpfs) unless it must outlive the run or
memory is short; either way nothing stays mounted afterwards."""
from __future__ import annotations

import os

import pytest

from condor_seed.local import workarea
from condor_seed.local.chroot import mounts_under

pytestmark = pytest.mark.root


def _fstype(path) -> str:
    for line in open("/proc/self/mounts"):
        device, target, fstype = line.split()[:3]
        if target == str(path):
            return fstype
    return ""


def test_tree_is_in_memory_and_unmounted_after(tmp_path):
    with workarea.work_area(tmp_path, "build-1") as work:
        tree = work / workarea.TREE
        assert _fstype(tree.resolve()) == "tmpfs"
        (tree / "etc").mkdir()
    assert mounts_under(tmp_path) == [] and not (tmp_path / "build-1").exists()


def test_kept_tree_is_on_disk(tmp_path):
    with workarea.work_area(tmp_path, "build-2", keep=True) as work:
        assert not os.path.ismount(work / workarea.TREE)
    assert (tmp_path / "build-2").exists() and mounts_under(tmp_path) == []


def test_short_memory_keeps_the_tree_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(workarea, "TREE_TMPFS_MIN_AVAILABLE", 1 << 60)
    with workarea.work_area(tmp_path, "build-3") as work:
        assert not os.path.ismount(work / workarea.TREE)
    assert mounts_under(tmp_path) == []


def test_a_killed_runs_tmpfs_is_reaped(tmp_path):
    work = tmp_path / "smoke-1"
    work.mkdir()
    (work / workarea.LOCK).touch()  # a run that was SIGKILLed: its lock is free, its tmpfs still there
    assert workarea._tree_in_memory(work / workarea.TREE)
    assert workarea.reap_stale(tmp_path) == [work]
    assert mounts_under(tmp_path) == [] and not work.exists()


def test_no_tmpfs_falls_back_to_the_disk(tmp_path, monkeypatch):
    real_run = workarea.subprocess.run

    def refuse_tmpfs(args, **kwargs):
        if args[:3] == ["mount", "-t", "tmpfs"]:
            return real_run(["sh", "-c", "echo 'mount: permission denied' >&2; exit 32"], **kwargs)
        return real_run(args, **kwargs)

    monkeypatch.setattr(workarea.subprocess, "run", refuse_tmpfs)
    with workarea.work_area(tmp_path, "build-4") as work:
        assert not os.path.ismount(work / workarea.TREE) and (work / workarea.TREE).is_dir()
    assert not (tmp_path / "build-4").exists()
