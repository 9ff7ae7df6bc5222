"""Clear refusals before anything happens (no root needed to run these)."""
from __future__ import annotations

import pytest

from condor_seed.errors import PreflightError, RecipeError
from condor_seed.local import rootfs
from condor_seed.local.build import check_recipe
from condor_seed.local.mirror import mirrors_from_text, system_mirror
from condor_seed.recipe import load_recipe


def test_not_root_is_refused(monkeypatch):
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(PreflightError, match="needs root .* run it with sudo"):
        rootfs.require_root_tools()


def test_missing_debootstrap_names_the_install(monkeypatch):
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootfs.shutil, "which", lambda tool: None if tool == "debootstrap" else f"/usr/bin/{tool}")
    with pytest.raises(PreflightError, match=r"missing debootstrap: apt-get install debootstrap"):
        rootfs.require_root_tools()


def test_ec2_recipe_is_not_a_local_recipe():
    with pytest.raises(RecipeError, match="the local target bakes Debian recipes"):
        check_recipe(load_recipe("rhel9-x86_64"))


def test_mirror_is_read_from_apt_sources(tmp_path):
    deb822 = ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
              "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
              "Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\n")
    assert mirrors_from_text(deb822, deb822=True) == ["http://mirror.example/debian"]
    one_line = "# comment\ndeb [arch=amd64] http://other.example/debian/ trixie main\n"
    assert mirrors_from_text(one_line, deb822=False) == ["http://other.example/debian"]
    (tmp_path / "x.sources").write_text(deb822)
    assert system_mirror([tmp_path / "none.list", tmp_path]) == "http://mirror.example/debian"
    with pytest.raises(PreflightError, match="no Debian mirror found"):
        system_mirror([tmp_path / "none.list"])


def test_base_cache_key_follows_the_mirror(tmp_path):
    a = rootfs.base_tarball_path(tmp_path, "trixie", "x86_64", "http://a.example/debian")
    b = rootfs.base_tarball_path(tmp_path, "trixie", "x86_64", "http://b.example/debian")
    assert a != b and a.name.startswith("trixie-amd64-minbase-")
