"""The Debian mirror this machine already uses, read from its apt sources at run time."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import PreflightError

SOURCES = [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")]


def mirrors_from_text(text: str, deb822: bool) -> list[str]:
    """Archive URLs for Debian's main archive (not -security, not third-party) in apt source text."""
    urls = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes").lower() == "no":
                continue
            suites = fields.get("Suites", "").split()
            if any(s.endswith("-security") for s in suites) or not suites:
                continue
            urls += fields.get("URIs", "").split()
    else:
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and not m.group(2).endswith("-security"):
                urls.append(m.group(1))
    return [u.rstrip("/") for u in urls if re.search(r"/debian$", u.rstrip("/"))]


def system_mirror(sources=SOURCES) -> str:
    files = []
    for src in sources:
        files += sorted(src.glob("*")) if src.is_dir() else [src]
    for path in files:
        if path.is_file() and path.suffix in (".list", ".sources"):
            found = mirrors_from_text(path.read_text(errors="replace"), deb822=path.suffix == ".sources")
            if found:
                return found[0]
    raise PreflightError("no Debian mirror found in /etc/apt/sources.list{,.d}: pass --mirror URL")
