"""Tag names condor-seed puts on everything it creates, and small helpers around EC2's tag lists.

Every builder instance, volume, security group, image and snapshot carries the build id, so an
interrupted run can be undone by tag and `invoke cleanup` can find what a killed run left. Resources
that are still part of an unfinished build also carry `condor-seed:expires`; a finished image loses
that tag, which is how the janitor tells a result from a leftover.
"""
from __future__ import annotations

import datetime as dt

from ..fingerprint import FINGERPRINT_TAG

RECIPE_TAG = "condor-seed:recipe"
BUILD_ID_TAG = "condor-seed:build-id"
BASE_AMI_TAG = "condor-seed:base-ami"
EXPIRES_TAG = "condor-seed:expires"  # ISO-8601 UTC; only on resources of an unfinished run
ROLE_TAG = "condor-seed:role"  # builder | smoke-test | image
SMOKE_TEST_TAG = "condor-seed:smoke-test"  # passed | failed: on an image our smoke test booted
NAME_TAG = "Name"
# What the image holds (issue 13: freshness)
HTCONDOR_TAG = "condor-seed:htcondor"  # the condor version-release the image's fingerprint holds
PACKAGES_TAG = "condor-seed:packages-sha256"  # sha256 of the image's sorted package list
SBOM_TAG = "condor-seed:sbom-sha256"  # sha256 of the image's CycloneDX SBOM file (a nightly artifact)
CHECKED_TAG = "condor-seed:checked"  # ISO-8601 UTC: a rebuild found the same packages then (age resets)

__all__ = ["RECIPE_TAG", "BUILD_ID_TAG", "FINGERPRINT_TAG", "BASE_AMI_TAG", "EXPIRES_TAG", "ROLE_TAG", "SMOKE_TEST_TAG",
           "HTCONDOR_TAG", "PACKAGES_TAG", "SBOM_TAG", "CHECKED_TAG",
           "NAME_TAG"]


def utc_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def tag_specs(tags: dict[str, str], *resource_types: str) -> list[dict]:
    return [{"ResourceType": rt, "Tags": tag_list(tags)} for rt in resource_types]


def build_filter(build_id: str) -> list[dict]:
    return [{"Name": f"tag:{BUILD_ID_TAG}", "Values": [build_id]}]
