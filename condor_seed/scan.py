"""Secret scan of a baked root filesystem: the gate before an image may be packed or published.

Two layers: an explicit list of files that must never ship (instance keys, credentials, pool
secrets, cloud-init instance state), and detect-secrets' content detectors (AWS keys, private
keys, tokens) over the text files where configuration and user data live.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

# (glob relative to the root, why it must not ship)
FORBIDDEN_PATHS: list[tuple[str, str]] = [
    ("**/authorized_keys", "SSH authorized_keys"),
    ("**/authorized_keys2", "SSH authorized_keys"),
    ("etc/ssh/ssh_host_*", "SSH host key (every instance would share it)"),
    ("root/.aws", "AWS credentials"),
    ("home/*/.aws", "AWS credentials"),
    ("root/.ssh/id_*", "SSH private key"),
    ("home/*/.ssh/id_*", "SSH private key"),
    ("etc/condor/condor_pool_password", "HTCondor pool password"),
    ("etc/condor/passwords.d/*", "HTCondor pool password / token signing key"),
    ("etc/condor/tokens.d/*", "HTCondor IDTOKEN"),
    ("root/.condor/tokens.d/*", "HTCondor IDTOKEN"),
    ("home/*/.condor/tokens.d/*", "HTCondor IDTOKEN"),
    ("root/.condor/*KeyFile", "condor_annex AWS key file"),
    ("home/*/.condor/*KeyFile", "condor_annex AWS key file"),
    ("var/lib/cloud/instances/*", "cloud-init instance state"),
    ("var/lib/cloud/data/*", "cloud-init instance state"),
    ("var/lib/cloud/instance", "cloud-init instance state"),
    ("root/.*_history", "shell history"),
    ("home/*/.*_history", "shell history"),
]
# Content scan: where text configuration and user files live; the rest is package payload.
CONTENT_DIRS = ["etc", "root", "home", "var/lib/condor", "var/lib/cloud", "var/log", "opt", "srv", "usr/local",
                "usr/libexec/condor-seed", "tmp", "var/tmp"]
SKIP_DIRS = ["etc/ssl/certs", "usr/share/ca-certificates"]  # public CA certificates
CONTENT_PLUGINS = [
    "AWSKeyDetector", "PrivateKeyDetector", "GitHubTokenDetector", "GitLabTokenDetector", "JwtTokenDetector",
    "SlackDetector", "StripeDetector", "TwilioKeyDetector", "AzureStorageKeyDetector", "ArtifactoryDetector",
    "BasicAuthDetector", "OpenAIDetector",
]
MAX_FILE_BYTES = 1 << 20
PSEUDO_DIRS = {"proc", "sys", "dev", "run"}


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
    findings = {(f.path, f.reason): f for f in _forbidden(root) + _content(root)}
    return sorted(findings.values(), key=lambda f: (f.path, f.reason))


def matches_forbidden(path: str) -> str | None:
    """Reason a single image path must not ship (used for tarball member checks), or None."""
    rel = path.lstrip("/")
    for pattern, reason in FORBIDDEN_PATHS:
        if fnmatch.fnmatchcase(rel, pattern.replace("**/", "*/")) or fnmatch.fnmatchcase(rel, pattern.replace("**/", "")):
            return reason
    return None
