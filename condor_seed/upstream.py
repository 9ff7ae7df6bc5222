"""The newest `condor` an HTCondor RPM repository serves, read from its metadata.

``{repo_base}/{series}/el{N}/{arch}/release/repodata/repomd.xml`` names the primary metadata
(``…-primary.xml.gz``, ``.xz``, ``.bz2`` or ``.zst``, whatever the repository serves); the primary
lists every package with its epoch, version and release. The answer is cached by repomd's
revision (and the primary's checksum): an unchanged repository costs one small request, a changed
one two. Every request has a timeout and a size cap. A repository that cannot be read is an
`UpstreamUnavailable` with a one-line reason, for the caller to warn about and fall back from.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tempfile
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import zstandard

from .errors import SeedError
from .packages import compare_evr
from .recipe import Recipe

REPO_NS = "{http://linux.duke.edu/metadata/repo}"
COMMON_NS = "{http://linux.duke.edu/metadata/common}"
RPM_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
PACKAGE = "condor"
TIMEOUT = 10.0  # seconds per request (connect and each read)
MAX_REPOMD_BYTES = 1 << 20
MAX_PRIMARY_BYTES = 256 << 20  # decompressed
# Point the metadata reads at a mirror (e.g. an internal one) instead of the recipes' repo_base.
MIRROR_ENV = "CONDOR_SEED_HTCONDOR_MIRROR"


class UpstreamUnavailable(SeedError):
    """The repository's metadata could not be read."""


@dataclass(frozen=True)
class RepoKey:
    """One repository: a series for one EL version and architecture."""

    base: str
    series: str
    el: str
    arch: str  # rpm's name: x86_64, aarch64

    @property
    def url(self) -> str:
        return f"{self.base.rstrip('/')}/{self.series}/el{self.el}/{self.arch}/release"

    def __str__(self) -> str:
        return f"HTCondor {self.series} el{self.el} {self.arch}"


@dataclass(frozen=True)
class Newest:
    version: str  # e.g. 24.0.13-1.el9 (version-release; epoch: prefix when not 0)
    revision: str  # repomd's revision, the cache key
    requests: int  # how many requests this answer cost (1: cached revision, 2: primary read)


def repo_for(recipe: Recipe, mirror: str | None = None) -> RepoKey | None:
    """The RPM repository a recipe installs HTCondor from; None for a recipe that uses its distribution's."""
    if recipe.os_family != "rhel":
        return None
    base = mirror or os.environ.get(MIRROR_ENV) or recipe.htcondor_repo_base
    return RepoKey(base, recipe.htcondor_channel, recipe.os_version, RPM_ARCH[recipe.architecture])


Fetch = Callable[[str, int], bytes]


def http_get(url: str, limit: int) -> bytes:
    """GET with a timeout and a size cap; any failure is an UpstreamUnavailable naming the URL."""
    request = urllib.request.Request(url, headers={"User-Agent": "condor-seed"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) from recipes
            body = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise UpstreamUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UpstreamUnavailable(f"{url}: {reason}") from None
    if len(body) > limit:
        raise UpstreamUnavailable(f"{url}: larger than {limit} bytes")
    return body


def parse_repomd(text: bytes, url: str) -> tuple[str, str, str]:
    """(revision, primary location, primary checksum) from repomd.xml."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UpstreamUnavailable(f"{url}: not valid repomd.xml ({exc})") from None
    for data in root.iter(f"{REPO_NS}data"):
        if data.get("type") == "primary":
            location = data.find(f"{REPO_NS}location")
            checksum = data.find(f"{REPO_NS}checksum")
            if location is None or not location.get("href"):
                break
            revision = root.findtext(f"{REPO_NS}revision") or ""
            return revision, location.get("href"), (checksum.text or "").strip() if checksum is not None else ""
    raise UpstreamUnavailable(f"{url}: repomd.xml names no primary metadata")


def decompress(data: bytes, name: str) -> io.BufferedIOBase:
    """A stream of the decompressed file, by its suffix."""
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=io.BytesIO(data))
    if name.endswith(".xz"):
        return lzma.LZMAFile(io.BytesIO(data))
    if name.endswith(".bz2"):
        return bz2.BZ2File(io.BytesIO(data))
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    return io.BytesIO(data)


def newest_in_primary(stream: io.BufferedIOBase, arch: str, url: str, name: str = PACKAGE) -> str | None:
    """The highest [epoch:]version-release of package `name` for `arch` (or noarch) in primary.xml."""
    best = None
    try:
        for _, element in ET.iterparse(_Capped(stream, MAX_PRIMARY_BYTES, url), events=("end",)):
            if element.tag != f"{COMMON_NS}package":
                continue
            if element.findtext(f"{COMMON_NS}name") == name and element.findtext(f"{COMMON_NS}arch") in (arch, "noarch"):
                v = element.find(f"{COMMON_NS}version")
                epoch = v.get("epoch", "0")
                evr = f"{epoch + ':' if epoch not in ('', '0') else ''}{v.get('ver')}-{v.get('rel')}"
                if best is None or compare_evr(evr, best) > 0:
                    best = evr
            element.clear()
    except (ET.ParseError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise UpstreamUnavailable(f"{url}: primary metadata does not read ({exc})") from None
    return best


class _Capped(io.RawIOBase):
    """Stop a decompression bomb: refuse to read past `limit` bytes."""

    def __init__(self, stream, limit: int, url: str):
        self.stream, self.left, self.url = stream, limit, url

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(65536 if size is None or size < 0 else size)
        self.left -= len(chunk)
        if self.left < 0:
            raise UpstreamUnavailable(f"{self.url}: primary metadata larger than {MAX_PRIMARY_BYTES} bytes")
        return chunk


class Cache:
    """{repository URL: {revision, checksum, version}} in one JSON file, written atomically."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        if self.path and self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                self.entries = {}  # a damaged cache only costs a re-read

    def get(self, url: str) -> dict | None:
        return self.entries.get(url)

    def put(self, url: str, entry: dict) -> None:
        with self._lock:
            self.entries[url] = entry
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".upstream.", dir=self.path.parent)
                with os.fdopen(fd, "w") as handle:
                    json.dump(self.entries, handle, indent=1, sort_keys=True)
                os.replace(tmp, self.path)


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "condor-seed" / "upstream.json"


def newest_condor(repo: RepoKey, cache: Cache, fetch: Fetch = http_get) -> Newest:
    """The newest condor the repository serves; one request when repomd's revision is the cached one."""
    repomd_url = f"{repo.url}/repodata/repomd.xml"
    revision, href, checksum = parse_repomd(fetch(repomd_url, MAX_REPOMD_BYTES), repomd_url)
    key = f"{revision}:{checksum}"
    cached = cache.get(repo.url)
    if cached and cached.get("revision") == key and cached.get("version"):
        return Newest(cached["version"], key, 1)
    primary_url = f"{repo.url}/{href}"
    version = newest_in_primary(decompress(fetch(primary_url, MAX_PRIMARY_BYTES), href), repo.arch, primary_url)
    if version is None:
        raise UpstreamUnavailable(f"{primary_url}: serves no {PACKAGE} package for {repo.arch}")
    cache.put(repo.url, {"revision": key, "version": version})
    return Newest(version, key, 2)


@dataclass(frozen=True)
class UpstreamCheck:
    """What the repository check found for one recipe: a version, or a warning why there is none."""

    repo: str | None = None
    version: str | None = None
    warning: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_recipes(recipes: list[Recipe], cache: Cache, fetch: Fetch = http_get,
                  mirror: str | None = None) -> dict[str, UpstreamCheck]:
    """Each recipe's newest upstream condor; one read per repository however many recipes share it.
    A repository that cannot be read gives its recipes a warning, never an exception."""
    repos = {recipe.name: repo_for(recipe, mirror) for recipe in recipes}
    answers: dict[RepoKey, UpstreamCheck] = {}
    for repo in dict.fromkeys(r for r in repos.values() if r):
        try:
            answers[repo] = UpstreamCheck(str(repo), newest_condor(repo, cache, fetch).version)
        except UpstreamUnavailable as exc:
            answers[repo] = UpstreamCheck(str(repo), warning=f"{repo} unreadable: {exc}")
    return {name: answers[repo] if repo else UpstreamCheck() for name, repo in repos.items()}
