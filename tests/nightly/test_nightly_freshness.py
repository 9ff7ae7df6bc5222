"""Nightly freshness against the emulator and a local HTTP server serving HTCondor repository metadata:
a new condor patch release rebuilds only the recipes it concerns; an unreadable repository is a warning
and the published state stands; a seed past max_age_days is rebuilt, and the new image is kept only
when its packages changed."""
from __future__ import annotations

import datetime as dt

from condor_seed.aws.tags import CHECKED_TAG, HTCONDOR_TAG, PACKAGES_TAG, SBOM_TAG
from condor_seed.freshness import CHECKED_UNCHANGED
from condor_seed.nightly import BUILT, UP_TO_DATE

from publish_helpers import REGIONS

PAIR = "rhel9-x86_64,rhel9-x86_64-htcondor25"


def later(days: float):
    """A clock `days` ahead (the emulator's images keep their real creation dates)."""
    moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    return lambda: moment


def test_a_new_patch_release_rebuilds_only_its_recipe(night):
    first = night.run(PAIR)
    assert all(run.action == BUILT for run in first.values()), {n: r.action for n, r in first.items()}
    lts24 = first["rhel9-x86_64"]
    assert night.tags("us-east-1", lts24.amis["us-east-1"])[HTCONDOR_TAG] == "24.0.12-1.el9"

    night.repo.requests.clear()
    same = night.run(PAIR)
    assert [run.action for run in same.values()] == [UP_TO_DATE, UP_TO_DATE]
    assert night.count("RunInstances") == 0 and len(night.emulated.calls) <= 10 * 2
    assert night.repo.repomd_requests() == 2 and night.repo.metadata_requests() == 0  # cached revisions

    night.repo.publish("25.0", "9", "x86_64", ["25.0.4", "25.0.5"])  # HTCondor ships a patch release
    bumped = night.run(PAIR)
    assert bumped["rhel9-x86_64"].action == UP_TO_DATE
    lts25 = bumped["rhel9-x86_64-htcondor25"]
    assert lts25.action == BUILT and lts25.fingerprint != first["rhel9-x86_64-htcondor25"].fingerprint
    assert lts25.changes.startswith("condor 25.0.4-1.el9→25.0.5-1.el9")
    assert night.count("RunInstances") == 2  # one builder, one smoke test: that recipe only
    assert night.tags("us-east-1", lts25.amis["us-east-1"])[HTCONDOR_TAG] == "25.0.5-1.el9"


def test_an_unreadable_repository_is_a_warning_and_the_published_state_stands(night, capsys):
    published = night.run()["rhel9-x86_64"]
    night.repo.server.shutdown()
    night.repo.server.server_close()  # the repository is gone: connection refused
    down = night.run()["rhel9-x86_64"]
    assert down.ok and down.action.startswith(UP_TO_DATE) and "WARNING" in down.action
    assert "unreadable" in down.action and "kept the published seed's condor 24.0.12-1.el9" in down.action
    assert down.fingerprint == published.fingerprint and night.count("RunInstances") == 0
    assert "WARNING: HTCondor 24.0 el9 x86_64 unreadable" in capsys.readouterr().err


def test_past_max_age_with_the_same_packages_publishes_nothing(night):
    published = night.run()["rhel9-x86_64"]
    recheck = night.run(now=later(8))["rhel9-x86_64"]
    assert recheck.ok and recheck.action == CHECKED_UNCHANGED, recheck.action
    assert recheck.amis == published.amis and night.count("RunInstances") == 1  # a builder; no smoke test
    assert not night.emulated.ops("CopyImage") and not night.emulated.ops("ModifyImageAttribute")
    for region, image_id in published.amis.items():
        assert CHECKED_TAG in night.tags(region, image_id)
    mine = night.setup.ec2("us-east-1").describe_images(Owners=["self"])["Images"]
    assert [i["ImageId"] for i in mine if i["State"] == "available" and "rhel9" in i["Name"]] \
        == [published.amis["us-east-1"]], "the rebuilt image was discarded"
    # the check restarted the seed's age: the next nightly (a day later) is up to date again
    assert night.run(now=later(9))["rhel9-x86_64"].action == UP_TO_DATE


def test_past_max_age_with_errata_publishes_the_rebuilt_seed(night):
    published = night.run()["rhel9-x86_64"]
    night.guest.errata = 14  # RHEL updates that only an instance can see
    fresh = night.run(now=later(8))["rhel9-x86_64"]
    assert fresh.ok and fresh.action == BUILT and list(fresh.amis) == REGIONS
    assert set(fresh.amis.values()).isdisjoint(published.amis.values())
    assert fresh.changes == "14 pkgs"  # same condor; the package count from the two SBOMs
    old, new = (night.tags("us-east-1", run.amis["us-east-1"]) for run in (published, fresh))
    assert old[PACKAGES_TAG] != new[PACKAGES_TAG] and old[SBOM_TAG] != new[SBOM_TAG]
