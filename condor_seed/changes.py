"""What changed between two images: packages added, removed, upgraded (or downgraded); the
HTCondor version; the base image. Pure: two package maps and two manifest entries in, a report out.

The short form feeds the nightly table: ``condor 24.0.12→24.0.13, 14 pkgs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import manifest
from .packages import compare_evr
from .sbom import read_versions

Key = tuple[str, str]  # (package name, arch)

@dataclass
class Changes:
    added: list[tuple[Key, str]] = field(default_factory=list)
    removed: list[tuple[Key, str]] = field(default_factory=list)
    upgraded: list[tuple[Key, str, str]] = field(default_factory=list)
    downgraded: list[tuple[Key, str, str]] = field(default_factory=list)
    htcondor: tuple[str, str] | None = None  # (old, new) when it changed
    base_image: tuple[str, str] | None = None

    @property
    def package_count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.upgraded) + len(self.downgraded)

    @property
    def empty(self) -> bool:
        return not (self.package_count or self.htcondor or self.base_image)

    def short(self) -> str:
        """`condor 24.0.12→24.0.13, base ami-1→ami-2, 14 pkgs`, or `no changes`."""
        parts = []
        if self.htcondor:
            parts.append(f"condor {self.htcondor[0]}→{self.htcondor[1]}")
        if self.base_image:
            parts.append(f"base {self.base_image[0]}→{self.base_image[1]}")
        if self.package_count:
            parts.append(f"{self.package_count} pkg{'s' if self.package_count != 1 else ''}")
        return ", ".join(parts) or "no changes"

    def lines(self) -> list[str]:
        out = [f"HTCondor: {self.htcondor[0]} → {self.htcondor[1]}" if self.htcondor else "HTCondor: unchanged",
               f"base image: {self.base_image[0]} → {self.base_image[1]}" if self.base_image else "base image: unchanged",
               f"packages: {len(self.upgraded)} upgraded, {len(self.downgraded)} downgraded, {len(self.added)} added, "
               f"{len(self.removed)} removed"]
        out += [f"  ↑ {name}.{arch} {old} → {new}" for (name, arch), old, new in self.upgraded]
        out += [f"  ↓ {name}.{arch} {old} → {new}" for (name, arch), old, new in self.downgraded]
        out += [f"  + {name}.{arch} {version}" for (name, arch), version in self.added]
        out += [f"  - {name}.{arch} {version}" for (name, arch), version in self.removed]
        return out


def diff(old: dict[Key, str], new: dict[Key, str], *, old_htcondor: str = "", new_htcondor: str = "",
         old_base: str = "", new_base: str = "") -> Changes:
    changes = Changes()
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None:
            changes.added.append((key, after))
        elif after is None:
            changes.removed.append((key, before))
        elif before != after:
            (changes.upgraded if compare_evr(after, before) > 0 else changes.downgraded).append((key, before, after))
    if old_htcondor and new_htcondor and old_htcondor != new_htcondor:
        changes.htcondor = (old_htcondor, new_htcondor)
    if old_base and new_base and old_base != new_base:
        changes.base_image = (old_base, new_base)
    return changes


# ---------------------------------------------------------------- between two recorded builds
SBOM_KEY = "sbom"  # manifest custom_data: path of the build's SBOM (and sbom_sha256, packages_sha256)


def builds_with_sbom(data: dict) -> list[dict]:
    """A manifest's builds that recorded an SBOM, oldest first."""
    return [b for b in data.get("builds") or [] if (b.get("custom_data") or {}).get(SBOM_KEY)]


def compare_builds(old: dict, new: dict) -> Changes:
    old_data, new_data = old.get("custom_data") or {}, new.get("custom_data") or {}
    return diff(read_versions(old_data[SBOM_KEY]), read_versions(new_data[SBOM_KEY]),
                old_htcondor=old_data.get("htcondor_version", ""), new_htcondor=new_data.get("htcondor_version", ""),
                old_base=old_data.get("base_ami") or old_data.get("base_image", ""),
                new_base=new_data.get("base_ami") or new_data.get("base_image", ""))


def recipe_changes(recipe: str, manifest_dir: Path | None = None, build_id: str | None = None) -> tuple[dict, dict, Changes]:
    """The recorded build `build_id` (default: the newest with an SBOM) against the one recorded before it."""
    path = manifest.path_for(recipe, manifest_dir)
    builds = builds_with_sbom(manifest.load(path))
    if build_id:
        index = next((i for i, b in enumerate(builds) if b.get("packer_run_uuid") == build_id), None)
        if index is None:
            raise manifest.ManifestError(f"{path}: no build {build_id!r} with an SBOM")
    else:
        index = len(builds) - 1
    if index < 1:
        raise manifest.ManifestError(f"{path}: {len(builds)} build(s) with an SBOM; `changes` needs two "
                                     f"(build the recipe again, or pass --build)")
    old, new = builds[index - 1], builds[index]
    return old, new, compare_builds(old, new)
