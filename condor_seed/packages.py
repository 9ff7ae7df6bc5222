"""An image's installed packages, as the bake script reports them on the console.

The bake prints (see templates/bake/report-packages.sh.j2)::

    CONDOR-SEED-BAKE: packages-begin format=rpm count=612 sha256=HEX
    CONDOR-SEED-BAKE: packages 0000 <base64 of the gzipped list, 76 characters a line>
    ...
    CONDOR-SEED-BAKE: packages-end lines=N

The list is ``name<TAB>epoch<TAB>version<TAB>release<TAB>arch`` a line, sorted. Lines are
numbered, so a line the console shows twice (cloud-init's copy and ours) is harmless, and a
report cut short (GetConsoleOutput keeps the last 64 KB) is detected, never half-read.
Pure: text in, packages out.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass

from .errors import SeedError

FORMATS = ("rpm", "deb")


class PackageReportError(SeedError):
    """The console holds no complete, intact package report."""


@dataclass(frozen=True, order=True)
class Package:
    name: str
    epoch: str
    version: str
    release: str
    arch: str

    @property
    def evr(self) -> str:
        """[epoch:]version[-release], the way rpm and dpkg print a version."""
        epoch = f"{self.epoch}:" if self.epoch not in ("", "0") else ""
        release = f"-{self.release}" if self.release else ""
        return f"{epoch}{self.version}{release}"

    def line(self) -> str:
        return "\t".join((self.name, self.epoch, self.version, self.release, self.arch))


@dataclass(frozen=True)
class PackageList:
    format: str  # rpm | deb
    packages: tuple[Package, ...]

    @property
    def text(self) -> str:
        return "".join(p.line() + "\n" for p in self.packages)

    @property
    def digest(self) -> str:
        """sha256 of the sorted list: equal digests, equal package sets (the nightly compares these)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def version_of(self, name: str) -> str | None:
        return next((p.evr for p in self.packages if p.name == name), None)


def parse_list(text: str, fmt: str) -> PackageList:
    if fmt not in FORMATS:
        raise PackageReportError(f"unknown package format {fmt!r} (expected one of {', '.join(FORMATS)})")
    packages = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0] or not fields[2]:
            raise PackageReportError(f"package list line {number}: expected 5 tab-separated fields, got {line!r}")
        packages.append(Package(*fields))
    return PackageList(fmt, tuple(sorted(packages)))


_BEGIN = re.compile(r"packages-begin format=(\w+) count=(\d+) sha256=([0-9a-f]{64})\s*$")
_CHUNK = re.compile(r"packages (\d{4,}) ([A-Za-z0-9+/=]+)\s*$")
_END = re.compile(r"packages-end lines=(\d+)\s*$")


def read_report(console: str, marker: str) -> PackageList:
    """The last complete package report in the console text; PackageReportError when there is none."""
    lines = [line.strip() for line in (console or "").splitlines()]
    tagged = [line[len(marker):].strip() for line in lines if line.startswith(marker)]
    begins = [i for i, line in enumerate(tagged) if _BEGIN.match(line)]
    if not begins:
        if any(_CHUNK.match(line) or _END.match(line) for line in tagged):
            raise PackageReportError("the package report's first line is not in the console output "
                                     "(cut off: GetConsoleOutput keeps only the last 64 KB)")
        raise PackageReportError(f"no package report ({marker} packages-begin …) in the console output")
    start = begins[-1]
    fmt, count, digest = _BEGIN.match(tagged[start]).groups()
    chunks: dict[int, str] = {}
    expected = None
    for line in tagged[start + 1:]:
        if chunk := _CHUNK.match(line):
            chunks.setdefault(int(chunk.group(1)), chunk.group(2))
        elif end := _END.match(line):
            expected = int(end.group(1))
            break
    if expected is None:
        raise PackageReportError(f"the package report has no end line ({len(chunks)} lines read)")
    missing = [n for n in range(expected) if n not in chunks]
    if missing:
        raise PackageReportError(f"the package report misses {len(missing)} of {expected} lines (first: {missing[0]})")
    try:
        text = gzip.decompress(base64.b64decode("".join(chunks[n] for n in range(expected)))).decode()
    except (binascii.Error, OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise PackageReportError(f"the package report does not decode ({exc})") from None
    if hashlib.sha256(text.encode()).hexdigest() != digest:
        raise PackageReportError("the package report's sha256 does not match its content")
    result = parse_list(text, fmt)
    if len(result.packages) != int(count):
        raise PackageReportError(f"the package report announces {count} packages but holds {len(result.packages)}")
    return result


def report_lines(packages: PackageList, marker: str) -> list[str]:
    """The console lines the bake script prints for this list (the reference for its format)."""
    text = packages.text.encode()
    encoded = base64.b64encode(gzip.compress(text, compresslevel=9, mtime=0)).decode()
    chunks = [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
    return ([f"{marker} packages-begin format={packages.format} count={len(packages.packages)} "
             f"sha256={hashlib.sha256(text).hexdigest()}"]
            + [f"{marker} packages {n:04d} {chunk}" for n, chunk in enumerate(chunks)]
            + [f"{marker} packages-end lines={len(chunks)}"])


# ---------------------------------------------------------------- version order
_SEGMENT = re.compile(r"(\d+|[A-Za-z]+|~|\^)")


def compare_versions(a: str, b: str) -> int:
    """-1, 0, 1 in the spirit of rpmvercmp / dpkg: digits numerically, letters lexically, `~` before all."""
    if a == b:
        return 0
    left, right = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for x, y in zip(left, right):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            return (int(x) > int(y)) - (int(x) < int(y))
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1  # a number is newer than letters
        return (x > y) - (x < y)
    if len(left) == len(right):
        return (a > b) - (a < b)  # only separators differ
    longer_is_left = len(left) > len(right)
    extra = (left if longer_is_left else right)[min(len(left), len(right))]
    newer = extra != "~"
    return (1 if newer else -1) * (1 if longer_is_left else -1)


def _split_epoch(evr: str) -> tuple[int, str]:
    epoch, _, rest = evr.rpartition(":") if re.match(r"^\d+:", evr) else ("0", "", evr)
    return int(epoch or 0), rest


def _split_release(version: str) -> tuple[str, str]:
    head, _, release = version.rpartition("-")
    return (head, release) if head else (version, "")


def compare_evr(a: str, b: str) -> int:
    """[epoch:]version[-release]: epoch first, then the version, then the release (as rpm and dpkg do)."""
    (ea, ra), (eb, rb) = _split_epoch(a), _split_epoch(b)
    if ea != eb:
        return (ea > eb) - (ea < eb)
    (va, rel_a), (vb, rel_b) = _split_release(ra), _split_release(rb)
    return compare_versions(va, vb) or compare_versions(rel_a, rel_b)
