"""Work folders under out/work: locked while a run uses them, reaped when a killed run left them.

A run that is SIGKILLed cannot unmount or stop what it started. The next run finds its folder
(the lock is free again), stops what still runs in it, unmounts it and removes it.

A folder's lock is a POSIX record lock (lockf), not a flock. A flock belongs to the open file,
which a child shares from fork until its exec closes it: right after a SIGKILL such a half-started
child can still hold it, and the reaper would take a dead run for a live one. A record lock belongs
to the process and dies with it. Record locks do not exclude their own process, so the process
remembers its own folders and never opens their lock files twice (closing one would drop the lock).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

from ..log import progress
from .chroot import kill_processes_in, mounts_under, remove_tree

LOCK = ".lock"
KEEP = ".keep"  # asked for with --keep-work: unmounted when stale, never removed
TREE = "rootfs"  # the unpacked root filesystem in a work folder
# The tree goes on a tmpfs unless it must outlive the run (--keep-work) or memory is short: writing
# ~400 MB of small files to this machine's disk took 4-9 s per unpack, to memory 0.5 s.
TREE_TMPFS_SIZE = "3g"
TREE_TMPFS_MIN_AVAILABLE = 6 << 30  # bytes of MemAvailable before a tmpfs is used
_MINE: set[Path] = set()  # work folders this process holds


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True):
    """An exclusive flock on `path` (created if missing); yields False when non-blocking and busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def reap_stale(parent: Path) -> list[Path]:
    """Clean every work folder under `parent` whose run is gone; returns those it cleaned."""
    reaped = []
    for work in sorted(p for p in Path(parent).iterdir() if p.is_dir() and not p.name.startswith(".")):
        lock = work / LOCK
        if work.resolve() in _MINE or not lock.exists():
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            killed = kill_processes_in(work / TREE)
            for target in mounts_under(work):
                subprocess.run(["umount", "--lazy", target], capture_output=True)
            if not (work / KEEP).exists():
                remove_tree(work)
            progress(f"cleaned up after an interrupted run: {work.name}"
                     + (f" ({len(killed)} process(es) stopped)" if killed else ""))
            reaped.append(work)
        finally:
            os.close(fd)
    return reaped


def _memory_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_in_memory(tree: Path) -> bool:
    """Mount a tmpfs for the tree when there is memory to spare; True when mounted."""
    if _memory_available() < TREE_TMPFS_MIN_AVAILABLE:
        return False
    tree.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TREE_TMPFS_SIZE},mode=0755", "condor-seed-tree",
                            str(tree)], capture_output=True, text=True)
    if mount.returncode:  # e.g. no tmpfs in this container: the disk will do, only slower
        progress(f"note: no tmpfs for the work tree ({mount.stderr.strip()}); using the disk")
    return mount.returncode == 0


def _unmount_tree(tree: Path) -> None:
    if os.path.ismount(tree) and subprocess.run(["umount", str(tree)], capture_output=True).returncode:
        subprocess.run(["umount", "--lazy", str(tree)], capture_output=True)  # a straggler still inside


@contextlib.contextmanager
def work_area(parent: Path, name: str, keep: bool = False):
    """out/work/NAME for one run: stale folders reaped first, locked while used, removed after.
    Its tree (NAME/rootfs) is in memory unless kept."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    reap_stale(parent)
    # Made and locked under a hidden name, then renamed: a reaper never sees it unlocked.
    hidden, work = parent / f".{name}.new", parent / name
    hidden.mkdir()
    fd = os.open(hidden / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        hidden.rename(work)
        _MINE.add(work.resolve())
        if keep:
            (work / KEEP).touch()
        else:
            _tree_in_memory(work / TREE)
        try:
            yield work
        finally:
            if not keep:
                _unmount_tree(work / TREE)
                remove_tree(work)
    finally:
        _MINE.discard(work.resolve())
        os.close(fd)
        remove_tree(hidden)
