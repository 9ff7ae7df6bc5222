"""The upstream check reads real HTTP from a local server serving HTCondor-shaped repository metadata."""
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from condor_seed import upstream
from condor_seed.emulator.htcondor_repo import FixtureRepo
from condor_seed.paths import RECIPES_DIR
from condor_seed.recipe import load_recipe, load_recipes


@pytest.fixture
def repo(tmp_path):
    with FixtureRepo(tmp_path / "www") as served:
        yield served


def key(repo, series="24.0", el="9", arch="x86_64"):
    return upstream.RepoKey(repo.url, series, el, arch)


@pytest.mark.parametrize("compression", ["gz", "zst", "xz"])
def test_newest_condor_from_primary_metadata(repo, tmp_path, compression):
    repo.publish("24.0", "9", "x86_64", ["24.0.9", "24.0.13", "24.0.10"], compression)
    found = upstream.newest_condor(key(repo), upstream.Cache(tmp_path / "cache.json"))
    # numeric order (24.0.13 > 24.0.9), this architecture only (the fixture also has a ppc64le 99.0.0)
    assert found.version == "24.0.13-1.el9" and found.requests == 2
    assert repo.repomd_requests() == 1 and repo.metadata_requests() == 1


def test_unchanged_repository_costs_one_small_request(repo, tmp_path):
    repo.publish("24.0", "9", "x86_64", ["24.0.12"])
    cache_path = tmp_path / "cache.json"
    upstream.newest_condor(key(repo), upstream.Cache(cache_path))
    again = upstream.newest_condor(key(repo), upstream.Cache(cache_path))  # a new process: the cache is a file
    assert again.version == "24.0.12-1.el9" and again.requests == 1
    assert repo.repomd_requests() == 2 and repo.metadata_requests() == 1
    repo.publish("24.0", "9", "x86_64", ["24.0.12", "24.0.13"])  # a patch release: new revision
    bumped = upstream.newest_condor(key(repo), upstream.Cache(cache_path))
    assert bumped.version == "24.0.13-1.el9" and bumped.requests == 2 and repo.metadata_requests() == 2


def private_recipes(tmp_path: Path) -> Path:
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR, recipes)
    (recipes / "rhel9-x86_64-twin.yaml").write_text("description: same repository as rhel9-x86_64\n"
                                                    "extends: rhel9-x86_64\n")
    return recipes


def test_one_read_per_repository_and_none_for_distribution_packages(repo, tmp_path):
    for series, el, arch, version in [("24.0", "9", "x86_64", "24.0.12"), ("24.0", "9", "aarch64", "24.0.11"),
                                      ("24.0", "8", "x86_64", "24.0.12"), ("25.0", "9", "x86_64", "25.0.4")]:
        repo.publish(series, el, arch, [version])
    recipes = load_recipes("all", private_recipes(tmp_path))
    found = upstream.check_recipes(recipes, upstream.Cache(None), mirror=repo.url)
    assert {name: check.version for name, check in found.items()} == {
        "debian13-local": None, "debian-sid-local": None, "rhel8-x86_64": "24.0.12-1.el8", "rhel9-arm64": "24.0.11-1.el9",
        "rhel9-x86_64": "24.0.12-1.el9", "rhel9-x86_64-twin": "24.0.12-1.el9", "rhel9-x86_64-htcondor25": "25.0.4-1.el9"}
    assert found["debian13-local"].warning is None and found["rhel9-arm64"].repo == "HTCondor 24.0 el9 aarch64"
    assert repo.repomd_requests() == 4 and repo.metadata_requests() == 4  # the twin shares rhel9-x86_64's read


def test_mirror_from_the_environment(repo, monkeypatch):
    monkeypatch.setenv(upstream.MIRROR_ENV, repo.url)
    assert upstream.repo_for(load_recipe("rhel9-arm64")).url == f"{repo.url}/24.0/el9/aarch64/release"
    monkeypatch.delenv(upstream.MIRROR_ENV)
    assert upstream.repo_for(load_recipe("rhel9-arm64")).url.startswith("https://")


def test_server_down_is_a_warning_per_recipe_not_a_crash(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    found = upstream.check_recipes([load_recipe("rhel9-x86_64")], upstream.Cache(None),
                                   mirror=f"http://127.0.0.1:{port}/repo")
    check = found["rhel9-x86_64"]
    assert check.version is None and "HTCondor 24.0 el9 x86_64 unreadable" in check.warning
    assert "Connection refused" in check.warning and "repomd.xml" in check.warning


def test_missing_or_garbage_metadata_is_a_warning(repo, tmp_path):
    found = upstream.check_recipes([load_recipe("rhel9-x86_64")], upstream.Cache(None), mirror=repo.url)
    assert "HTTP 404" in found["rhel9-x86_64"].warning
    repo.publish("24.0", "9", "x86_64", ["24.0.12"])
    repomd = next((tmp_path / "www").rglob("repomd.xml"))
    repomd.write_text("<html>maintenance</html")
    found = upstream.check_recipes([load_recipe("rhel9-x86_64")], upstream.Cache(None), mirror=repo.url)
    assert "not valid repomd.xml" in found["rhel9-x86_64"].warning
    repo.publish("24.0", "9", "x86_64", [])  # a repository without condor
    found = upstream.check_recipes([load_recipe("rhel9-x86_64")], upstream.Cache(None), mirror=repo.url)
    assert "serves no condor package for x86_64" in found["rhel9-x86_64"].warning


def test_a_server_that_never_answers_is_bounded(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    monkeypatch.setattr(upstream, "TIMEOUT", 0.5)
    start = time.monotonic()
    found = upstream.check_recipes([load_recipe("rhel9-x86_64")], upstream.Cache(None),
                                   mirror=f"http://127.0.0.1:{listener.getsockname()[1]}/repo")
    assert time.monotonic() - start < 5 and "timed out" in found["rhel9-x86_64"].warning
    listener.close()


def test_a_damaged_cache_only_costs_a_reread(repo, tmp_path):
    repo.publish("24.0", "9", "x86_64", ["24.0.12"])
    cache_path = tmp_path / "cache.json"
    cache_path.write_text("{not json")
    assert upstream.newest_condor(key(repo), upstream.Cache(cache_path)).requests == 2
    assert upstream.newest_condor(key(repo), upstream.Cache(cache_path)).requests == 1
