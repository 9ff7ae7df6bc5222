"""A root filesystem made usable for a while: mounts in, processes tracked, everything undone.

No systemd runs in a chroot, so daemons are started directly; whatever runs with its root in
the tree when we leave is killed, and every mount is undone, deepest first, on every exit path
(success, exception, Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from ..log import progress
from ..errors import SeedError
from ..pipeline import shielded

BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below root (from /proc/self/mountinfo), deepest first."""
    prefix = str(Path(root).resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].encode().decode("unicode_escape")
        if target == prefix or target.startswith(prefix + "/"):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def processes_in(root: Path) -> list[int]:
    """Pids of processes whose root directory is this tree."""
    want = str(Path(root).resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/root") == want:
                    pids.append(int(entry))
    return pids


def kill_processes_in(root: Path, timeout: float = 5.0) -> list[int]:
    killed = processes_in(root)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while processes_in(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed


def signals_deferred():
    """Cleanup must not be cut short by Ctrl-C / SIGTERM: hold them, raise afterwards."""
    return shielded(progress, raise_after=True, hint="a SIGKILL now leaves mounts that the next run removes")


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        raise SeedError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


def _mounts_inside(root: Path) -> list[str]:
    """Mount points below root, not root itself (the tree may be a tmpfs of its own)."""
    return [m for m in mounts_under(root) if m != str(root)]


@contextlib.contextmanager
def mounted(root: Path):
    """proc, a private bind of /dev (+ /dev/pts, tmpfs /dev/shm), tmpfs /run, read-only
    resolv.conf. Yields the resolved root."""
    root = Path(root).resolve()
    inside = _mounts_inside(root)
    if inside:
        raise SeedError(f"{root} is already mounted ({', '.join(inside)}): another run uses it")
    done: list[str] = []

    def mount(args: list[str], target: Path) -> None:
        if not target.exists():
            target.mkdir(parents=True)
        _run(["mount", *args, str(target)])
        done.append(str(target))

    try:
        mount(["-t", "proc", "proc"], root / "proc")
        mount(["--bind", "/dev"], root / "dev")
        _run(["mount", "--make-private", str(root / "dev")])  # never propagate back to the host
        mount(["--bind", "/dev/pts"], root / "dev/pts")
        mount(["-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs"], root / "dev/shm")
        mount(["-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs"], root / "run")
        (root / "run/lock").mkdir(mode=0o1777)
        os.chmod(root / "run/lock", 0o1777)
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        resolv.touch()
        mount(["--bind", "/etc/resolv.conf"], resolv)
        _run(["mount", "-o", "remount,bind,ro", str(resolv)])
        yield root
    finally:
        with signals_deferred():
            stragglers = kill_processes_in(root)
            if stragglers:
                progress(f"stopped {len(stragglers)} leftover process(es) in {root}")
            for target in reversed(done):
                if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                    kill_processes_in(root)
                    subprocess.run(["umount", "--lazy", target], capture_output=True)
            left = _mounts_inside(root)
            if left:
                progress(f"WARNING: still mounted under {root}: {', '.join(left)}")


def chroot_argv(root: Path, cmd: list[str], elsewhere: bool = False, prefix: list[str] = ()) -> list[str]:
    """argv running `cmd` inside the tree. `prefix` enters a network namespace first
    (netns.InstanceNetwork.prefix). `elsewhere`: as if on another machine of the same network,
    i.e. in a private mount namespace with its own /tmp. FS authentication asks the client to make a
    file in the server's /tmp, so such a process cannot prove its user with FS, as on another host."""
    if not elsewhere:
        return [*prefix, "chroot", str(root), *cmd]
    return [*prefix, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$0/tmp" && exec chroot "$0" "$@"', str(root), *cmd]


def run_in(root: Path, cmd: list[str], env: dict | None = None, elsewhere: bool = False,
           prefix: list[str] = (), **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside the tree (chroot) with a clean environment."""
    kwargs.setdefault("check", True)
    return subprocess.run(chroot_argv(root, cmd, elsewhere, prefix), env={**BASE_ENV, **(env or {})}, **kwargs)


def remove_tree(path: Path) -> None:
    """rm -rf that refuses a tree with anything mounted in it and never crosses file systems."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if mounts_under(path):
            raise SeedError(f"refusing to delete {path}: still mounted ({', '.join(mounts_under(path))})")
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)
