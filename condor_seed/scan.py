"""Secret scan of a baked root filesystem: the gate before an image may be packed or published.

Three layers: the forbidden paths of `leak_rules`; its secret patterns (AWS and private keys) over
every regular file, binaries and large files included, run by the very shell function the bake
script's own check uses on every target; and detect-secrets' other content detectors (tokens,
passwords in URLs) over the text files where configuration and user data live.
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .leak_rules import FORBIDDEN_PATHS, PSEUDO_DIRS, shell_functions

# Content scan: where text configuration and user files live; the rest is package payload.
CONTENT_DIRS = ["etc", "root", "home", "var/lib/condor", "var/lib/cloud", "var/log", "var/spool", "opt", "srv", "usr/local",
                "usr/libexec/condor-seed", "tmp", "var/tmp"]
SKIP_DIRS = ["etc/ssl/certs", "usr/share/ca-certificates"]  # public CA certificates
# AWS and private keys are leak_rules' SECRET_PATTERNS (shared with the bake script).
CONTENT_PLUGINS = [
    "GitHubTokenDetector", "GitLabTokenDetector", "JwtTokenDetector",
    "SlackDetector", "StripeDetector", "TwilioKeyDetector", "AzureStorageKeyDetector", "ArtifactoryDetector",
    "BasicAuthDetector", "OpenAIDetector",
]
MAX_FILE_BYTES = 1 << 20  # for detect-secrets' line-based text detectors only


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned root, with a leading /
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _relative(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


def _forbidden(root: Path) -> list[Finding]:
    """Forbidden paths under root, walked without following symlinks (a rootfs's absolute links
    point at the host), outside pseudo filesystems; a forbidden folder is named once, not entered."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in PSEUDO_DIRS]
            rel_dir = ""
        for name in list(dirnames) + filenames:
            rel = f"{rel_dir}/{name}".lstrip("/")
            reason = matches_forbidden(rel)
            if reason:
                found.append(Finding("/" + rel, reason))
                if name in dirnames:
                    dirnames.remove(name)
    return found


def _start_secrets(root: Path) -> subprocess.Popen:
    """leak_rules' secret patterns over every file, by the bake script's own `seed_secrets`
    (started in the background: GNU grep reads while detect-secrets works)."""
    script = shell_functions() + 'seed_secrets "$1"\n'
    return subprocess.Popen(["bash", "-c", script, "seed_secrets", str(root)], stdout=subprocess.PIPE)


def _secrets(root: Path, proc: subprocess.Popen) -> list[Finding]:
    out, _ = proc.communicate()
    found = []
    for line in out.decode(errors="replace").splitlines():
        path, _, reason = line.rpartition(": ")
        found.append(Finding(_relative(root, Path(path)), reason))
    return found


def _text_files(root: Path):
    for top in CONTENT_DIRS:
        base = root / top
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            dirnames[:] = [d for d in dirnames if f"{rel_dir}/{d}" not in SKIP_DIRS]
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                        continue
                    with open(path, "rb") as fh:
                        if b"\0" in fh.read(4096):
                            continue  # binary
                except OSError:
                    continue
                yield path


def _content(root: Path) -> list[Finding]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import transient_settings

    found = []
    with transient_settings({"plugins_used": [{"name": n} for n in CONTENT_PLUGINS]}):
        secrets = SecretsCollection()
        for path in _text_files(root):
            secrets.scan_file(str(path))
        for filename, secret in secrets:
            found.append(Finding(_relative(root, Path(filename)), f"{secret.type} (line {secret.line_number})"))
    return found


def scan_tree(root: Path) -> list[Finding]:
    """Every finding in the tree at `root`, sorted; empty means the tree may ship."""
    root = Path(root)
    secrets = _start_secrets(root)
    try:
        found = _forbidden(root) + _content(root)
    finally:
        found += _secrets(root, secrets)
    findings = {(f.path, f.reason): f for f in found}
    return sorted(findings.values(), key=lambda f: (f.path, f.reason))


def matches_forbidden(path: str) -> str | None:
    """Reason a single image path must not ship (used for tarball member checks), or None."""
    rel = path.lstrip("/")
    for pattern, reason in FORBIDDEN_PATHS:
        if fnmatch.fnmatchcase(rel, pattern.replace("**/", "*/")) or fnmatch.fnmatchcase(rel, pattern.replace("**/", "")):
            return reason
    return None
