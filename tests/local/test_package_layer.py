"""The cached package layer: the base after the bake's apt steps, keyed by both, remade once a day.
Real tar and files; `apply` stands in for the chroot'ed apt run (the real one runs in every local
build of the suite)."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from condor_seed.local import rootfs


def _base(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("ID=debian\n")
    base = tmp_path / "cache" / "trixie-amd64-minbase-0123456789ab.tar"
    base.parent.mkdir()
    subprocess.run(["tar", "-C", str(tree), "-cf", str(base), "."], check=True)
    return base


def _members(tarball) -> set[str]:
    return set(subprocess.run(["tar", "-tf", str(tarball)], capture_output=True, text=True, check=True).stdout.split())


def test_layer_is_made_once_then_cached_and_holds_what_the_steps_installed(tmp_path):
    base, runs = _base(tmp_path), []

    def apply(tree, steps):
        runs.append(steps)
        (tree / "usr/bin").mkdir(parents=True)
        (tree / "usr/bin/condor_master").write_text("installed by the steps\n")

    layer, cached = rootfs.ensure_package_layer(base, "digest-a", "apt-get install htcondor\n", apply)
    again, cached_again = rootfs.ensure_package_layer(base, "digest-a", "apt-get install htcondor\n", apply)
    assert (cached, cached_again, again) == (False, True, layer)
    assert runs == ["apt-get install htcondor\n"]
    assert {"./etc/os-release", "./usr/bin/condor_master"} <= _members(layer)
    assert not list(base.parent.glob("*.tmp")) and not list(base.parent.glob("*.part"))


def test_other_steps_or_another_base_make_another_layer(tmp_path):
    base = _base(tmp_path)
    keys = {rootfs.package_layer_path(base, digest, steps)
            for digest, steps in (("a", "install htcondor\n"), ("a", "install condor\n"), ("b", "install htcondor\n"))}
    assert len(keys) == 3


def test_a_day_old_layer_is_remade_and_outdated_ones_removed(tmp_path):
    base, runs = _base(tmp_path), []
    layer, _ = rootfs.ensure_package_layer(base, "d", "old steps\n", lambda tree, steps: runs.append(steps))
    day_ago = time.time() - rootfs.LAYER_MAX_AGE_S - 60
    os.utime(layer, (day_ago, day_ago))
    again, cached = rootfs.ensure_package_layer(base, "d", "old steps\n", lambda tree, steps: runs.append(steps))
    assert (again, cached, runs) == (layer, False, ["old steps\n", "old steps\n"])
    os.utime(layer, (day_ago, day_ago))
    newer, _ = rootfs.ensure_package_layer(base, "d", "new steps\n", lambda tree, steps: None)
    assert newer.exists() and not layer.exists()


def test_failing_steps_leave_no_layer(tmp_path):
    base = _base(tmp_path)

    def apply(tree, steps):
        raise RuntimeError("E: Unable to locate package htcondor")

    with pytest.raises(RuntimeError, match="Unable to locate package"):
        rootfs.ensure_package_layer(base, "d", "steps\n", apply)
    assert not [p for p in base.parent.iterdir() if p.suffix in (".tar", ".tmp", ".part") and p != base]
