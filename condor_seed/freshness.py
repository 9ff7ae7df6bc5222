"""Is a published seed still fresh? Pure decisions the nightly takes per recipe.

- The fingerprint holds the newest `condor` the HTCondor repository serves (`upstream`): a new
  patch release changes it, so the recipe is rebuilt. When the repository cannot be read, the
  version the published seed was fingerprinted with stands in (never a silent skip: the warning
  goes into the table), else the recipe's series.
- What cannot be seen from outside (RHEL errata through RHUI) is caught by age: a published seed
  older than the recipe's `max_age_days` is rebuilt, and the new image is kept only when its
  package list differs from the published one's (`checked: unchanged` otherwise).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .aws.tags import HTCONDOR_TAG, PACKAGES_TAG
from .upstream import UpstreamCheck

CHECKED_UNCHANGED = "checked: unchanged"


@dataclass(frozen=True)
class CondorVersion:
    """The condor version to fingerprint, where it came from, and what the table must warn about."""

    version: str | None  # None: the recipe's series (no RPM repository, or nothing to fall back to)
    source: str  # upstream | published | recipe
    warning: str | None = None


def condor_for_fingerprint(check: UpstreamCheck, published_tags: dict[str, str] | None) -> CondorVersion:
    if check.version:
        return CondorVersion(check.version, "upstream")
    if not check.warning:
        return CondorVersion(None, "recipe")  # the distribution's own package: nothing to read upstream
    fallback = (published_tags or {}).get(HTCONDOR_TAG)
    if fallback:
        return CondorVersion(fallback, "published", f"{check.warning}; kept the published seed's condor {fallback}")
    return CondorVersion(None, "recipe", f"{check.warning}; no published seed to fall back to")


def age_days(created: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if created is None else (now - created).total_seconds() / 86400


def too_old(created: dt.datetime | None, max_age_days: int, now: dt.datetime) -> bool:
    """Older than the window (an image without a creation date counts as old: check it)."""
    age = age_days(created, now)
    return age is None or age > max_age_days


def unchanged(new_packages_digest: str, published_tags: dict[str, str]) -> bool:
    """The rebuilt image holds exactly the published seed's packages (both lists known)."""
    published = published_tags.get(PACKAGES_TAG, "")
    return bool(new_packages_digest) and new_packages_digest == published
