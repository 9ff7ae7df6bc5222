"""Build manifests in the shape of Packer's manifest post-processor, one file per recipe.

    {"builds": [{"name": RECIPE, "builder_type": "condor-seed.amazon-ebs", "build_time": UNIX,
                 "files": null, "artifact_id": "us-east-1:ami-…[,us-west-2:ami-…]",
                 "packer_run_uuid": BUILD_ID, "custom_data": {str: str, …}}],
     "last_run_uuid": BUILD_ID}

Like Packer, a new build is appended and `last_run_uuid` points at it. custom_data values are
strings (Packer's rule): recipe, fingerprint, base_ami, base_ami_name, base_ami_date,
htcondor_version, build_id, secret_scan / smoke_test ("passed" | "failed" | "not-run"), encrypted;
`resumed: "true"` marks an entry nightly recreated from the image's tags (`nightly.build_from_image`).
Writes are atomic (temp file + rename); read-modify-write is serialised within the process (a lock)
and between processes (`flock` on a `.NAME.lock` file next to the manifest), so two runs updating
one manifest lose nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from .errors import SeedError
from .paths import PROJECT_DIR

BUILDER_TYPE = "condor-seed.amazon-ebs"
MANIFEST_DIR = PROJECT_DIR / "out" / "manifests"
RESULTS = ("passed", "failed", "not-run")
_lock = threading.Lock()


class ManifestError(SeedError):
    """A manifest is missing, unreadable, or has no such build."""


def path_for(recipe: str, manifest_dir: Path | None = None) -> Path:
    return Path(manifest_dir or MANIFEST_DIR) / f"{recipe}.json"


def all_paths(manifest_dir: Path | None = None) -> list[Path]:
    return sorted(Path(manifest_dir or MANIFEST_DIR).glob("*.json"))


MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # years of nightly builds fit; more is not a manifest
# The fields code reads from each build, and their types (Packer's shape; custom_data values are strings).
BUILD_FIELDS = {"name": str, "artifact_id": str, "packer_run_uuid": str, "builder_type": str, "custom_data": dict}


def load(path: Path) -> dict:
    path = Path(path)
    try:
        if path.is_dir():
            raise ManifestError(f"{path}: is a folder, not a manifest file")
        if path.exists() and path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: is {path.stat().st_size:,} bytes; not a manifest")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest (run `invoke build-seed` first)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("builds", []), list):
        raise ManifestError(f"{path}: not a manifest (expected a mapping with a `builds` list)")
    for index, build in enumerate(data.get("builds", [])):
        if not isinstance(build, dict):
            raise ManifestError(f"{path}: builds[{index}]: must be a mapping, got {type(build).__name__}")
        for field, kind in BUILD_FIELDS.items():
            if field in build and not isinstance(build[field], kind) and build[field] is not None:
                raise ManifestError(f"{path}: builds[{index}].{field}: must be a {kind.__name__}, "
                                    f"got {type(build[field]).__name__}")
    return data


def save(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _exclusive(path: Path):
    """This process's threads and every other process, one at a time, for one manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path.parent / f".{path.name}.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def format_artifact_id(region_amis: dict[str, str]) -> str:
    return ",".join(f"{region}:{ami}" for region, ami in region_amis.items())


def parse_artifact_id(value: str) -> dict[str, str]:
    pairs = (part.strip().split(":", 1) for part in (value or "").split(",") if ":" in part)
    return {region: ami for region, ami in pairs}


def new_build(*, recipe: str, build_id: str, region_amis: dict[str, str], custom_data: dict[str, str],
              build_time: int | None = None) -> dict:
    return {
        "name": recipe,
        "builder_type": BUILDER_TYPE,
        "build_time": int(build_time if build_time is not None else time.time()),
        "files": None,
        "artifact_id": format_artifact_id(region_amis),
        "packer_run_uuid": build_id,
        "custom_data": {k: str(v) for k, v in custom_data.items()},
    }


def append_build(path: Path, build: dict) -> Path:
    with _exclusive(path):
        data = load(path) if Path(path).exists() else {"builds": []}
        data.setdefault("builds", []).append(build)
        data["last_run_uuid"] = build["packer_run_uuid"]
        return save(path, data)


def find_build(data: dict, build_id: str | None = None) -> dict:
    """The build with that id, or the last run's build."""
    build_id = build_id or data.get("last_run_uuid")
    for build in reversed(data.get("builds") or []):
        if build.get("packer_run_uuid") == build_id:
            return build
    raise ManifestError(f"no build {build_id!r} in the manifest" if build_id else "the manifest names no last build")


def has_build(path: Path, build_id: str | None) -> bool:
    """Whether the manifest at `path` exists and holds that build."""
    if build_id is None or not Path(path).exists():
        return False
    return any(b.get("packer_run_uuid") == build_id for b in load(path).get("builds") or [])


def update_build(path: Path, build_id: str | None, *, artifact_id: str | None = None,
                 custom_data: dict[str, str] | None = None, region_amis: dict[str, str] | None = None) -> dict:
    """Change one build in place: replace artifact_id, add `region:ami` pairs, merge custom data."""
    with _exclusive(path):
        data = load(path)
        build = find_build(data, build_id)
        if artifact_id is not None:
            build["artifact_id"] = artifact_id
        if region_amis:
            pairs = parse_artifact_id(build.get("artifact_id", "")) | region_amis
            build["artifact_id"] = format_artifact_id(pairs)
        if custom_data:
            build.setdefault("custom_data", {}).update({k: str(v) for k, v in custom_data.items()})
        save(path, data)
        return build


def set_result(path: Path, build_id: str | None, check: str, result: str) -> dict:
    """E.g. set_result(path, build_id, "smoke_test", "passed")."""
    if result not in RESULTS:
        raise ValueError(f"{check}: result must be one of {RESULTS}, not {result!r}")
    return update_build(path, build_id, custom_data={check: result})


def find_by_ami(region: str, image_id: str, manifest_dir: Path | None = None) -> tuple[Path, dict] | None:
    """The manifest and build whose artifact_id names `region:image_id` (newest build first)."""
    for path in all_paths(manifest_dir):
        try:
            data = load(path)
        except ManifestError:
            continue
        for build in reversed(data.get("builds") or []):
            if parse_artifact_id(build.get("artifact_id", "")).get(region) == image_id:
                return path, build
    return None
