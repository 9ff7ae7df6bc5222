"""The one list of what must never ship in a public seed image, and the check built from it.

`shell_functions()` renders the lists into bash functions. The bake script carries them (its own
last check, on EC2 and in the local chroot alike) and `scan.py` runs the very same functions over
a local tree, so every target is held to identical rules with identical code.

- FORBIDDEN_PATHS: globs relative to the image root; `*` also crosses `/` (as `find -path` does),
  `**/NAME` means a file or folder called NAME anywhere.
- SECRET_PATTERNS: POSIX extended regular expressions (GNU grep -E) matched against the bytes of
  EVERY regular file, binaries and large files too, newlines being ordinary characters (`grep -z`).
  GNU grep reads a whole tree in seconds; Python's `re` needs ten times longer for the same.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

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
    ("etc/condor/hostkey.pem", "HTCondor host key (every instance would share it)"),
    ("root/.condor/tokens.d/*", "HTCondor IDTOKEN"),
    ("home/*/.condor/tokens.d/*", "HTCondor IDTOKEN"),
    ("root/.condor/*KeyFile", "condor_annex AWS key file"),
    ("home/*/.condor/*KeyFile", "condor_annex AWS key file"),
    ("var/lib/cloud/instances/*", "cloud-init instance state"),
    ("var/lib/cloud/data/*", "cloud-init instance state"),
    ("var/lib/cloud/instance", "cloud-init instance state"),
    ("var/lib/systemd/random-seed", "systemd random seed (every launch would share it)"),
    ("root/.*_history", "shell history"),
    ("home/*/.*_history", "shell history"),
]



@dataclass(frozen=True)
class SecretPattern:
    name: str
    ere: str
    in_programs: bool  # also inside ELF executables and libraries


SECRET_PATTERNS: list[SecretPattern] = [
    # An access key id stands alone: not part of a longer run of letters and digits (libunistring's
    # table of Unicode names holds strings like ...AKIAISLANDISSHARITAL...).
    SecretPattern("AWS Access Key", r"(^|[^A-Za-z0-9])(A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}([^A-Za-z0-9]|$)",
                  in_programs=True),
    # Libraries embed known self-test keys (libgnutls's FIPS tests): a private key is looked for in
    # every file except ELF programs.
    SecretPattern("Private Key",
                  r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----[[:space:]]+[A-Za-z0-9+/=:,. -]{16}",
                  in_programs=False),
]
PSEUDO_DIRS = ("proc", "sys", "dev", "run")


def _words(items) -> str:
    return " ".join(shlex.quote(item) for item in items)


def _shell_pattern_test(var: str, pattern: SecretPattern) -> str:
    found = f'grep -qzE -e "${var}" -- "$f"'
    if not pattern.in_programs:
        found = f'{{ [ "$(head -c 4 -- "$f" | tr -d \'\\0\')" != $\'\\x7fELF\' ] && {found}; }}'
    return f'      if {found}; then echo "$f: {pattern.name}"; fi'


def shell_functions() -> str:
    """Bash functions, each taking ROOT and printing one `PATH: REASON` line per finding under it
    (nothing when clean); they stay on ROOT's filesystem and need GNU find and grep:
    seed_forbidden (paths), seed_secrets (content), seed_leftovers (both). Compact: they travel
    in EC2 user data (16 KB)."""
    names = [p[3:] for p, _ in FORBIDDEN_PATHS if p.startswith("**/")]
    paths = [p for p, _ in FORBIDDEN_PATHS if not p.startswith("**/")]
    variables = {f"p{i}": pattern for i, pattern in enumerate(SECRET_PATTERNS)}
    assigned = " ".join(f"{var}={shlex.quote(p.ere)}" for var, p in variables.items())
    greps = " ".join(f'-e "${var}"' for var in variables)
    per_pattern = "\n".join(_shell_pattern_test(var, p) for var, p in variables.items())
    return f"""# Rendered from condor_seed/leak_rules.py: the same list and code scan.py uses.
seed_walk() {{  # ROOT FIND-EXPRESSION...: find on ROOT's filesystem, pseudo filesystems left out
  local root="${{1%/}}" d
  local -a skip=(-false)
  shift
  for d in {_words(PSEUDO_DIRS)}; do skip+=(-o -path "$root/$d"); done
  find "${{root:-/}}" -xdev \\( "${{skip[@]}}" \\) -prune -o "$@" 2>/dev/null
}}
seed_forbidden() {{
  local root="${{1%/}}" p
  local -a match=(-false)
  for p in {_words(names)}; do match+=(-o -name "$p"); done
  for p in {_words(paths)}; do match+=(-o -path "$root/$p"); done
  seed_walk "$1" \\( "${{match[@]}}" \\) -prune -print | sed 's/$/: forbidden path/' || true
}}
seed_secrets() {{  # one grep over every file finds candidates; only those are tried pattern by pattern
  local f {assigned}
  local -x LC_ALL=C
  seed_walk "$1" -type f -print0 | xargs -0 -r grep -lZzE {greps} -- 2>/dev/null \\
    | while IFS= read -r -d '' f; do
{per_pattern}
    done || true
}}
seed_leftovers() {{
  seed_forbidden "$1"
  seed_secrets "$1"
}}
"""
