"""`invoke build-seed --target local`: bake a recipe into a root filesystem image on this machine.

The same rendered bake script that EC2 user data runs is run inside the tree (chroot); the
result is scanned for secrets, packed as a zstd tarball and described by a manifest.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import manifest, sbom
from ..log import progress
from ..errors import RecipeError, SeedError
from ..fingerprint import fingerprint
from ..packages import read_report
from ..paths import PROJECT_DIR
from ..recipe import Recipe
from ..render import BAKE_SCRIPT, MARKERS, render
from ..scan import scan_tree
from . import rootfs
from .chroot import mounted
from .mirror import system_mirror
from .workarea import TREE, work_area

LOCAL_BUILDER = "condor-seed.local"
OUT_DIR = PROJECT_DIR / "out"
# Build-time only: no service starts in the chroot, no fsync per file, no translations.
# They are removed before the tree is scanned and packed.
BUILD_HELPERS = {
    "usr/sbin/policy-rc.d": ("#!/bin/sh\nexit 101\n", 0o755),
    "etc/dpkg/dpkg.cfg.d/zz-condor-seed-bake": ("force-unsafe-io\n", 0o644),
    # The mirror may serve a suite whose Release file looks expired against this clock (sid's
    # Valid-Until is a week); the bake's apt-get update must still read it. Local builds only.
    "etc/apt/apt.conf.d/zz-condor-seed-bake": ('Acquire::Languages "none";\nAcquire::Check-Valid-Until "false";\n',
                                               0o644),
    # A seed needs no manuals or translations: a smaller image packs, scans and boots faster.
    "etc/dpkg/dpkg.cfg.d/zz-condor-seed-nodoc": (
        "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"
        "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\npath-include=/usr/share/locale/locale.alias\n",
        0o644),
}


class BakeFailed(SeedError):
    """The bake script did not report success."""


class SecretsFound(SeedError):
    """The baked tree holds something that must not ship."""


@dataclass
class LocalBuild:
    recipe: str
    build_id: str
    image: Path
    manifest_path: Path
    fingerprint: str
    htcondor_version: str
    sbom: sbom.Sbom
    timings: dict[str, float]


def new_build_id(recipe: Recipe) -> str:
    return f"{recipe.name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_recipe(recipe: Recipe) -> None:
    if recipe.target != "local" or recipe.os_family != "debian":
        raise RecipeError(f"{recipe.path}: target: the local target bakes Debian recipes with target: local "
                          f"({recipe.name} is {recipe.os_family}/{recipe.target})")
    if not recipe.os_codename:
        raise RecipeError(f"{recipe.path}: os.codename: the local target needs the Debian suite (e.g. trixie)")


BAKE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
            "CONDOR_SEED_POWEROFF": "no", "DEBIAN_FRONTEND": "noninteractive"}


@contextlib.contextmanager
def _build_helpers(root: Path):
    for rel, (text, mode) in BUILD_HELPERS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    try:
        yield
    finally:
        for rel in BUILD_HELPERS:
            (root / rel).unlink(missing_ok=True)


def _apply_package_steps(root: Path, package_steps: str) -> None:
    """The bake's apt steps alone, as the bake runs them, for the cached package layer."""
    script = f"set -euo pipefail\nstep() {{ echo \"step: $*\"; }}\n{package_steps}apt-get -q clean\n"
    with _build_helpers(root), mounted(root) as root:
        proc = subprocess.run(["chroot", str(root), "/bin/bash", "-c", script], env=BAKE_ENV,
                              capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise BakeFailed(f"the bake's package steps failed in the cached layer:\n{tail}")


def _bake(root: Path, script: str, log_path: Path) -> str:
    """Run the bake script in the tree; stream its markers; return the HTCondor version it reports."""
    version, succeeded = "unknown", False
    with _build_helpers(root), mounted(root) as root:
        (root / "run" / BAKE_SCRIPT).write_text(script)  # /run is a tmpfs: gone with the mounts
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["chroot", str(root), "/bin/bash", f"/run/{BAKE_SCRIPT}"], env=BAKE_ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                for line in proc.stdout:
                    log.write(line)
                    if line.startswith(MARKERS["bake"]):
                        progress("  " + line.strip().removeprefix(MARKERS["bake"]).strip())
                        if "htcondor-version=" in line:
                            version = line.split("htcondor-version=", 1)[1].split()[0]
                        succeeded = succeeded or " SUCCESS " in f" {line.strip()} "
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if rc != 0 or not succeeded:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise BakeFailed(f"bake script failed (exit {rc}); last lines of {log_path}:\n{tail}")
    return version


def build_local(recipe: Recipe, force: bool = False, cache_dir: Path | None = None, mirror: str | None = None,
                out_dir: Path | None = None, keep_work: bool = False) -> LocalBuild:
    """Bake `recipe` into out/images/BUILD_ID.tar.zst and record it in out/manifests/RECIPE.json."""
    check_recipe(recipe)
    rootfs.require_root_tools()
    cache_dir = Path(cache_dir or rootfs.default_cache_dir())
    out_dir = Path(out_dir or OUT_DIR)
    mirror = (mirror or system_mirror()).rstrip("/")
    suite = recipe.os_codename
    build_id = new_build_id(recipe)
    timings: dict[str, float] = {}
    tree = render(recipe)
    start = time.monotonic()
    progress(f"local build {build_id}: recipe {recipe.name}, Debian {suite}")
    with work_area(out_dir / "work", build_id, keep=keep_work) as work:
        root = work / TREE
        t = time.monotonic()
        if force:
            stale = rootfs.base_tarball_path(cache_dir, suite, recipe.architecture, mirror)
            rootfs.remove_package_layers(stale)
            stale.unlink(missing_ok=True)
        base, cached = rootfs.ensure_base(cache_dir, suite, recipe.architecture, mirror)
        timings["base" if not cached else "base (cached)"] = time.monotonic() - t
        t = time.monotonic()
        layer, layer_cached = rootfs.ensure_package_layer(base, rootfs.base_digest(base), tree.package_steps,
                                                                 _apply_package_steps)
        timings["package layer" if not layer_cached else "package layer (cached)"] = time.monotonic() - t
        t = time.monotonic()
        rootfs.unpack(layer, root)
        timings["unpack"] = time.monotonic() - t
        progress(f"base ready ({'cached' if cached else 'new'}, packages {'cached' if layer_cached else 'installed'}):"
                 f" {layer.name}; running the bake script")
        t = time.monotonic()
        version = _bake(root, tree.bake_script.content, work / "bake.log")
        timings["bake"] = time.monotonic() - t
        packages = read_report((work / "bake.log").read_text(), MARKERS["bake"])
        t = time.monotonic()
        findings = scan_tree(root)
        timings["secret scan"] = time.monotonic() - t
        if findings:
            raise SecretsFound("secret scan failed; these must not ship:\n" + "\n".join(f"  {f}" for f in findings))
        progress("secret scan: clean; packing the image")
        t = time.monotonic()
        image = rootfs.pack(root, out_dir / "images" / f"{build_id}.tar.zst")
        timings["pack"] = time.monotonic() - t
        image_bytes = image.stat().st_size
        t = time.monotonic()
        image_sbom, sbom_data = sbom.record(packages, out_dir, recipe_name=recipe.name, build_id=build_id,
                                            distro=f"{recipe.os_family}-{recipe.os_version}",
                                            htcondor_version=version, built_at=dt.datetime.now(dt.timezone.utc))
        timings["sbom"] = time.monotonic() - t
        progress(f"SBOM: {image_sbom.components} packages in {image_sbom.path}")
        base_id = f"debian:{suite}:{rootfs.base_digest(base)[:16]}"
        digest = fingerprint(tree, base_id, version)
        build = manifest.new_build(
            recipe=recipe.name, build_id=build_id, region_amis={}, custom_data={
                "recipe": recipe.name, "fingerprint": digest, "base_image": base_id, "htcondor_version": version,
                "build_id": build_id, "secret_scan": "passed", "smoke_test": "not-run",
                "image_sha256": rootfs.sha256_file(image), "image_bytes": image_bytes,
                "tree_bytes": rootfs.tree_size(root), "encrypted": "false", **sbom_data,
            })
        build.update(builder_type=LOCAL_BUILDER, artifact_id=f"local:{image}",
                     files=[{"name": str(image), "size": image_bytes}])
        manifest_path = manifest.append_build(manifest.path_for(recipe.name, out_dir / "manifests"), build)
        timings["total"] = time.monotonic() - start
        progress(f"built {image} ({image_bytes / 1e6:.1f} MB, HTCondor {version}) in {timings['total']:.1f} s")
        return LocalBuild(recipe.name, build_id, image, manifest_path, digest, version, image_sbom, timings)
