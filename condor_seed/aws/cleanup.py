"""`invoke cleanup --region R [--older-than 6h] [--dry-run]`: remove what killed runs left behind.

Only resources of an unfinished run are candidates: they carry `condor-seed:expires` (a finished
image loses that tag, a published one never had it). A run whose expiry is still in the future may
be alive (a concurrent build mid-bake), so none of its resources is touched, whatever `--older-than`
says; once every expiry of the run has passed, it is removed. `--older-than` only decides for
candidates whose expiry cannot be read. Order: instances (terminated and waited for), security
groups, images with their snapshots, stray snapshots, stray volumes.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable

from ..errors import UsageError
from . import images, instances
from .preflight import identity_and_region
from .session import Aws
from .tags import BUILD_ID_TAG, EXPIRES_TAG, RECIPE_TAG, parse_utc, tag_dict
from .waiters import Poller

DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE = dt.timedelta(days=3650)  # older than any AWS account's leftovers; bounds what timedelta can hold
BUILD_TIME_RE = re.compile(r"(\d{8}T\d{6}Z)")
EXPIRES_FILTER = [{"Name": "tag-key", "Values": [EXPIRES_TAG]}]


def parse_duration(text: str) -> dt.timedelta:
    match = DURATION_RE.match(str(text))
    if not match:
        raise UsageError(f"--older-than {text!r}: use a number with s, m, h or d (like 6h or 90m)")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds > MAX_AGE.total_seconds():
        raise UsageError(f"--older-than {text!r}: at most {MAX_AGE.days}d")
    return dt.timedelta(seconds=seconds)


@dataclass
class Leftover:
    kind: str  # instance | security-group | image | snapshot | volume
    id: str
    build_id: str
    recipe: str
    started: dt.datetime | None
    expires: dt.datetime | None
    raw: dict

    def describe(self) -> str:
        started = self.started.strftime("%Y-%m-%d %H:%M UTC") if self.started else "unknown start"
        return f"{self.kind} {self.id} (recipe {self.recipe or '?'}, build {self.build_id or '?'}, {started})"


def _started(tags: dict[str, str], fallback) -> dt.datetime | None:
    match = BUILD_TIME_RE.search(tags.get(BUILD_ID_TAG, ""))
    if match:
        return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    if isinstance(fallback, str):
        return parse_utc(fallback)
    return fallback


def _leftover(kind: str, resource_id: str, resource: dict, created) -> Leftover:
    tags = tag_dict(resource.get("Tags"))
    return Leftover(kind, resource_id, tags.get(BUILD_ID_TAG, ""), tags.get(RECIPE_TAG, ""),
                    _started(tags, created), parse_utc(tags.get(EXPIRES_TAG, "")), resource)


def find_leftovers(ec2) -> list[Leftover]:
    found = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=EXPIRES_FILTER + [{"Name": "instance-state-name", "Values": instances.LIVE_STATES}])
    found += [_leftover("instance", i["InstanceId"], i, i.get("LaunchTime"))
              for page in pages for r in page["Reservations"] for i in r["Instances"]]
    groups = ec2.describe_security_groups(Filters=EXPIRES_FILTER)["SecurityGroups"]
    found += [_leftover("security-group", g["GroupId"], g, None) for g in groups]
    found += [_leftover("image", i["ImageId"], i, i.get("CreationDate"))
              for i in images.find_images(ec2, EXPIRES_FILTER)]
    pages = ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=EXPIRES_FILTER)
    found += [_leftover("snapshot", s["SnapshotId"], s, s.get("StartTime")) for page in pages for s in page["Snapshots"]]
    pages = ec2.get_paginator("describe_volumes").paginate(
        Filters=EXPIRES_FILTER + [{"Name": "status", "Values": ["available"]}])
    found += [_leftover("volume", v["VolumeId"], v, v.get("CreateTime")) for page in pages for v in page["Volumes"]]
    return found


def live_builds(candidates: list[Leftover], now: dt.datetime) -> set[str]:
    """Build ids with any resource whose expiry is still ahead: those runs may be going on right now."""
    return {item.build_id for item in candidates if item.expires is not None and item.expires > now}


def due(item: Leftover, now: dt.datetime, older_than: dt.timedelta, live: set[str] = frozenset()) -> bool:
    if item.build_id in live or (item.expires is not None and item.expires > now):
        return False  # never a live run's resource, whatever --older-than says
    if item.expires is not None:
        return True
    return item.started is None or now - item.started >= older_than


def cleanup(aws: Aws, region: str, *, older_than: dt.timedelta, dry_run: bool, report: Callable[[str], None],
            now: dt.datetime | None = None, poller: Poller | None = None) -> list[Leftover]:
    """Remove (or with dry_run only list) due leftovers; return them."""
    identity_and_region(aws, region)
    ec2 = aws.ec2(region)
    now = now or dt.datetime.now(dt.timezone.utc)
    poller = poller or Poller(timeout=900, report=report)
    candidates = find_leftovers(ec2)
    live = live_builds(candidates, now)
    chosen = [item for item in candidates if due(item, now, older_than, live)]
    skipped = len(candidates) - len(chosen)
    if skipped:
        report(f"leaving {skipped} resource(s) of run(s) not yet expired (maybe still running)")
    if not chosen:
        report(f"nothing to clean up in {region}")
        return []
    verb = "would remove" if dry_run else "removing"
    for item in chosen:
        report(f"{verb} {item.describe()}")
    if dry_run:
        return chosen
    by_kind = {kind: [i for i in chosen if i.kind == kind] for kind in
               ("instance", "security-group", "image", "snapshot", "volume")}
    instances.terminate_instances(ec2, [i.id for i in by_kind["instance"]], poller)
    for item in by_kind["security-group"]:
        instances.delete_security_group(ec2, item.id, poller)
    for item in by_kind["image"]:
        images.delete_image(ec2, item.id, item.raw)
    for item in by_kind["snapshot"]:
        images.delete_snapshot(ec2, item.id)
    for item in by_kind["volume"]:
        ec2.delete_volume(VolumeId=item.id)
    report(f"removed {len(chosen)} resource(s) in {region}")
    return chosen
