"""Root filesystems for the local target: a pristine debootstrap base, cached; a package layer on
it, cached; unpack; pack.

The base's cache key is (suite, architecture, mirror): a different mirror or suite makes a new base.
The base keeps apt's package lists (the bake's `apt-get update` is then cheap) but not the .debs.

The package layer is the base after the bake's own apt steps (render: `package_steps`), keyed by
the base's digest and those steps' text, and remade once a day. Installing HTCondor's ~75 packages
is most of a bake (dpkg, not downloading: 12-18 s of 20). The bake still runs every step on top of
the layer: `apt-get update` and `upgrade` pick up whatever the mirror published since, and the
install finds the packages in place, as on a base image that already carries them.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..log import progress
from ..errors import PreflightError, SeedError
from .chroot import remove_tree
from .workarea import locked

TAR_FLAGS = ["--numeric-owner", "--xattrs", "--acls"]
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# Host leftovers debootstrap copies in: they belong to the machine that runs the image.
HOST_LEFTOVERS = ["etc/hostname", "etc/resolv.conf"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("CONDOR_SEED_CACHE", "/var/cache/condor-seed"))


def require_root_tools() -> None:
    if os.geteuid() != 0:
        raise PreflightError("the local target needs root (debootstrap, chroot, mount): run it with sudo")
    missing = [tool for tool in ("debootstrap", "chroot", "mount", "tar", "zstd") if not shutil.which(tool)]
    if missing:
        raise PreflightError(f"missing {', '.join(missing)}: apt-get install {' '.join(missing)} (or ./scripts/setup)")


def base_tarball_path(cache_dir: Path, suite: str, architecture: str, mirror: str) -> Path:
    key = hashlib.sha256(mirror.encode()).hexdigest()[:12]
    return Path(cache_dir) / "base" / f"{suite}-{DEBIAN_ARCH[architecture]}-minbase-{key}.tar"


def ensure_base(cache_dir: Path, suite: str, architecture: str, mirror: str) -> tuple[Path, bool]:
    """The cached pristine base tarball, made with debootstrap if missing. Returns (path, was_cached)."""
    tarball = base_tarball_path(cache_dir, suite, architecture, mirror)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with locked(tarball.with_suffix(".lock")):  # two runs never debootstrap into one folder
        if tarball.exists():
            return tarball, True
        _debootstrap(tarball, suite, architecture, mirror)
    return tarball, False


def _debootstrap(tarball: Path, suite: str, architecture: str, mirror: str) -> None:
    scratch = tarball.with_suffix(".tmp")
    remove_tree(scratch)
    progress(f"debootstrap {suite} ({DEBIAN_ARCH[architecture]}, minbase) — first run only, about 30-60 s")
    proc = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--arch={DEBIAN_ARCH[architecture]}", suite, str(scratch), mirror],
        capture_output=True, text=True,
    )
    try:
        if proc.returncode:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise SeedError(f"debootstrap {suite} from {mirror} failed:\n{tail}")
        for deb in (scratch / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        for rel in HOST_LEFTOVERS:
            (scratch / rel).unlink(missing_ok=True)
        _tar_atomically(scratch, tarball)
    finally:
        remove_tree(scratch)


def _tar_atomically(tree: Path, tarball: Path) -> None:
    """An uncompressed tarball of `tree`, renamed into place: a killed run never leaves half of one."""
    partial = tarball.with_suffix(".part")
    subprocess.run(["tar", "-C", str(tree), *TAR_FLAGS, "-cf", str(partial), "."], check=True)
    partial.rename(tarball)


LAYER_MAX_AGE_S = 24 * 3600  # a day: the bake's upgrade on top stays small


def package_layer_path(base: Path, base_digest: str, package_steps: str) -> Path:
    key = hashlib.sha256(f"{base_digest}\n{package_steps}".encode()).hexdigest()[:12]
    return base.with_name(f"{_layer_prefix(base)}{key}.tar")


def _layer_prefix(base: Path) -> str:
    return f"{base.stem}-packages-"


def ensure_package_layer(base: Path, base_digest: str, package_steps: str,
                         apply: Callable[[Path, str], None]) -> tuple[Path, bool]:
    """The base with the bake's apt steps applied (`apply(tree, steps)`), made (or remade when a day
    old) under a lock. Returns (path, was_cached)."""
    layer = package_layer_path(base, base_digest, package_steps)
    with locked(layer.with_suffix(".lock")):
        fresh = layer.exists() and time.time() - layer.stat().st_mtime < LAYER_MAX_AGE_S
        if fresh:
            return layer, True
        scratch = layer.with_suffix(".tmp")
        progress(f"installing the recipe's packages into a cached layer of {base.name} (once a day, about 20 s)")
        try:
            unpack(base, scratch)
            apply(scratch, package_steps)
            _tar_atomically(scratch, layer)
        finally:
            remove_tree(scratch)
    for other in _package_layers(base):  # outdated ones are never used again
        if other != layer and time.time() - other.stat().st_mtime >= LAYER_MAX_AGE_S:
            other.unlink(missing_ok=True)
    return layer, False


def _package_layers(base: Path) -> list[Path]:
    return list(base.parent.glob(f"{_layer_prefix(base)}*.tar"))


def remove_package_layers(base: Path) -> None:
    for layer in _package_layers(base):
        layer.unlink(missing_ok=True)


def _empty(root: Path) -> None:
    """An empty folder at root; a mount point (the work area's tmpfs) stays and is emptied."""
    if os.path.ismount(root):
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            else:
                child.unlink()
        return
    remove_tree(root)
    root.mkdir(parents=True)


def unpack(tarball: Path, root: Path) -> None:
    _empty(root)
    subprocess.run(["tar", "-C", str(root), *TAR_FLAGS, "-xpf", str(tarball)], check=True)


def pack(root: Path, image: Path) -> Path:
    """Compressed tarball of the tree (zstd, multi-threaded); written atomically."""
    image.parent.mkdir(parents=True, exist_ok=True)
    partial = image.with_name(image.name + ".part")
    try:
        subprocess.run(["tar", "-C", str(root), *TAR_FLAGS, "--one-file-system", "--zstd", "-cf", str(partial), "."],
                       check=True, env={**os.environ, "ZSTD_CLEVEL": "3", "ZSTD_NBTHREADS": "0"})
        partial.rename(image)
    finally:
        partial.unlink(missing_ok=True)
    return image


def unpack_image(image: Path, root: Path) -> None:
    _empty(root)
    subprocess.run(["tar", "-C", str(root), *TAR_FLAGS, "--zstd", "-xpf", str(image)], check=True)


def tree_size(root: Path) -> int:
    out = subprocess.run(["du", "-sb", "--one-file-system", str(root)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def base_digest(tarball: Path) -> str:
    """sha256 of a cached base, computed once and kept beside it (warm builds skip rehashing it)."""
    sidecar = tarball.with_name(tarball.name + ".sha256")
    if sidecar.exists() and sidecar.stat().st_mtime >= tarball.stat().st_mtime:
        return sidecar.read_text().strip()
    digest = sha256_file(tarball)
    sidecar.write_text(digest + "\n")
    return digest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
