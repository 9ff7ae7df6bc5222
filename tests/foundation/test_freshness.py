"""The nightly's freshness decisions (pure): which condor version to fingerprint, how old is too old,
when a rebuilt image is the same as the published one."""
import datetime as dt

from condor_seed.freshness import (HTCONDOR_TAG, PACKAGES_TAG, condor_for_fingerprint, too_old, unchanged)
from condor_seed.recipe import load_recipe
from condor_seed.upstream import UpstreamCheck

NOW = dt.datetime(2026, 11, 28, 4, 17, tzinfo=dt.timezone.utc)


def test_upstream_version_wins_and_an_unreadable_repository_falls_back_with_a_warning():
    assert condor_for_fingerprint(UpstreamCheck("r", "24.0.13-1.el9"), {HTCONDOR_TAG: "24.0.12-1.el9"}).version \
        == "24.0.13-1.el9"
    down = UpstreamCheck("HTCondor 24.0 el9 x86_64", warning="HTCondor 24.0 el9 x86_64 unreadable: refused")
    fallback = condor_for_fingerprint(down, {HTCONDOR_TAG: "24.0.12-1.el9"})
    assert (fallback.version, fallback.source) == ("24.0.12-1.el9", "published")
    assert "unreadable: refused" in fallback.warning and "kept the published seed's condor 24.0.12-1.el9" in fallback.warning
    nothing = condor_for_fingerprint(down, None)
    assert nothing.version is None and "no published seed to fall back to" in nothing.warning
    distro = condor_for_fingerprint(UpstreamCheck(), None)
    assert (distro.version, distro.source, distro.warning) == (None, "recipe", None)


def test_age_window():
    assert not too_old(NOW - dt.timedelta(days=6, hours=23), 7, NOW)
    assert too_old(NOW - dt.timedelta(days=7, hours=1), 7, NOW)
    assert too_old(None, 7, NOW)


def test_unchanged_needs_both_lists_known_and_equal():
    assert unchanged("abc", {PACKAGES_TAG: "abc"})
    assert not unchanged("abc", {PACKAGES_TAG: "abd"})
    assert not unchanged("abc", {}) and not unchanged("", {PACKAGES_TAG: ""})


def test_recipes_default_to_a_seven_day_window():
    assert load_recipe("rhel9-x86_64").max_age_days == 7
