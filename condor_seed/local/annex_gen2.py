"""Smoke checks for a gen-2 seed (HTCondor 24.11+, `htcondor annex`), as a scientist meets them.

What `htcondor annex create` does first, and what its pilot does on the node it lands on, taken
from HTCondor's own source (v25.0.x: src/condor_tools/htcondor_cli/annex_create.py and
src/condor_scripts/annex/spark.sh):

* as the login user, `condor_token_fetch -key $(ANNEX_TOKEN_KEY_NAME) -authz READ -authz
  ADVERTISE_STARTD -authz ADVERTISE_MASTER -authz WRITE`: a token for that user, signed by the AP
  collector's key;
* the pilot reports to the seed's annex collector (ANNEX_COLLECTOR, `?sock=ap_collector`) with that
  token and attaches directly to the seed's schedd; the user's jobs with a TargetAnnexName run there;
* a pilot whose token was signed by any other key is refused;
* an EC2 annex instance (the EC2 path, `$(LIBEXEC)/condor_annex`, run by annex.py) is configured by
  nothing but the tarball condor_annex uploaded: start_ec2_node and ec2_node_joined.

Every annex node runs "elsewhere": its own /tmp, so FS cannot vouch for it as it would for a
process on the seed itself. The same holds for `_fs_is_local_only`, which proves that the FS method
the seed offers its login users gives a client on another machine nothing.
"""
from __future__ import annotations

import re
import secrets
import time

from .pool import LOGIN_USER, Pool, SmokeTestFailed, render_local, wait_for, write

ANNEX_NAME = "my-annex"
# How an HPC pilot configures itself (annex/spark.sh): its config.d file, from this template, and
# where its tokens.d and passwords.d live.
PILOT_TEMPLATE, PILOT_CONFIG_FILE, PILOT_SECRETS = "annex-pilot.config.j2", "00-basic-pilot", "/var/lib/{name}"
# name: (address, whose token). The job targets ANNEX_NAME, so it can run only on annex-pilot;
# rogue-pilot's token another key signed.
ANNEX_NODES = {
    "annex-pilot": ("127.0.0.16", "user"),
    "rogue-pilot": ("127.0.0.18", "foreign-key"),
}
# An EC2 annex instance, configured by nothing but the tarball condor_annex uploaded (start_ec2_node).
EC2_NODE = ("ec2-annex", "127.0.0.17")
# The annex command's own token request (annex_create.py, create_annex_token).
TOKEN_AUTHZ = ["READ", "ADVERTISE_STARTD", "ADVERTISE_MASTER", "WRITE"]
# what `htcondor job submit --annex-name NAME` adds to the user's submit file
ANNEX_TARGETING = f'MY.TargetAnnexName = "{ANNEX_NAME}"'


def _token_fetch(pool: Pool, key: str, token_name: str, elsewhere: bool = False):
    args = ["condor_token_fetch", "-lifetime", "3600", "-token", token_name, "-key", key]
    for authz in TOKEN_AUTHZ:
        args += ["-authz", authz]
    return pool.condor(args, user=LOGIN_USER, elsewhere=elsewhere)


def _ping_table(pool: Pool, levels: list[str], elsewhere: bool) -> dict[str, str]:
    """condor_ping -table against the seed's schedd as the login user: {level: its row}."""
    ping = pool.condor(["condor_ping", "-type", "schedd", "-table", *levels], user=LOGIN_USER, elsewhere=elsewhere)
    rows = {line.split()[0]: line for line in ping.stdout.splitlines() if line.split()[:1] and line.split()[0] in levels}
    if set(rows) != set(levels):
        raise SmokeTestFailed(f"condor_ping -table gave no row for {sorted(set(levels) - set(rows))}: {ping.stdout}")
    return rows


def _fs_is_local_only(pool: Pool, key: str, result) -> None:
    """FS (offered at DAEMON level for the token request) proves a login user on the seed and nobody
    else: from another machine the same user gets no token and no access above READ."""
    remote = _token_fetch(pool, key, "from-elsewhere", elsewhere=True)
    said = (remote.stdout + remote.stderr).strip()
    # The schedd offered FS and the client could not pass it: the refusal is the seed's, not the network's.
    if remote.returncode == 0 or "Failed to authenticate using FS" not in said:
        raise SmokeTestFailed(f"condor_token_fetch from another machine was not refused at FS: {said}")
    higher = ["DAEMON", "ADVERTISE_STARTD", "ADVERTISE_SCHEDD", "NEGOTIATOR", "ADMINISTRATOR"]
    rows = _ping_table(pool, higher, elsewhere=True)
    granted = [" ".join(rows[level].split()) for level in higher if " ALLOW " in f"{rows[level]} "]
    if granted:
        raise SmokeTestFailed(f"a client on another machine was granted: {granted}")
    result.passed("FS proves local users only: from another machine no token and nothing above READ",
                  "condor_token_fetch: Failed to authenticate using FS; condor_ping: " + ", ".join(higher) + " refused")


def _fetch_annex_token(pool: Pool, key: str, result) -> tuple[str, str]:
    """What `htcondor annex create` runs first, as the login user; returns the token and its identity."""
    token_name = f"{ANNEX_NAME}.{LOGIN_USER}@{pool.config_val('ANNEX_TOKEN_DOMAIN')}"
    fetched = _token_fetch(pool, key, token_name)
    token = pool.root / "home" / LOGIN_USER / ".condor/tokens.d" / token_name
    if fetched.returncode or not token.exists():
        raise SmokeTestFailed(f"condor_token_fetch as {LOGIN_USER} failed: {(fetched.stdout + fetched.stderr).strip()}")
    identity = re.search(r'"sub":"([^"]+)"', pool.condor(["condor_token_list"], user=LOGIN_USER).stdout)
    if not identity or not identity.group(1).startswith(f"{LOGIN_USER}@"):
        raise SmokeTestFailed(f"the annex token is not for {LOGIN_USER}: {identity and identity.group(1)}")
    result.passed(f"condor_token_fetch as login user {LOGIN_USER} (key {key})", f"token for {identity.group(1)}")
    return token.read_text(), identity.group(1)


def _foreign_token(pool: Pool, identity: str, key: str) -> str:
    """A token for the same user and key name, signed by a key the seed never had."""
    keys = "/root/foreign-keys"
    pool.condor(["sh", "-c", f"mkdir -p -m 0700 {keys} && head -c 32 /dev/urandom | base64 > {keys}/{key}.in && "
                             f"condor_store_cred add -c -f {keys}/{key} -i {keys}/{key}.in && rm {keys}/{key}.in"])
    made = pool.condor(["condor_token_create", "-identity", identity, "-key", key],
                       env={"_CONDOR_SEC_PASSWORD_DIRECTORY": keys})
    if made.returncode:
        raise SmokeTestFailed(f"could not make the foreign-key token: {made.stderr.strip()}")
    return made.stdout


def _start_annex_node(pool: Pool, name: str, token: str, collector: str, schedd: str, host: str) -> None:
    address, _ = ANNEX_NODES[name]
    config = render_local(PILOT_TEMPLATE, collector=collector, login_user=LOGIN_USER, login_host=host,
                          noclaim_shutdown=1200, lifetime=3600, owners=LOGIN_USER, annex_name=ANNEX_NAME,
                          request_id=secrets.token_hex(8), schedd_name=schedd)
    condor_config = pool.lay_out_worker(name, address, 0, PILOT_CONFIG_FILE, config)
    secrets_dir = pool.root / PILOT_SECRETS.format(name=name).lstrip("/")
    write(secrets_dir / "tokens.d" / f"{ANNEX_NAME}.token", token, 0o600)
    write(secrets_dir / "passwords.d/POOL", secrets.token_urlsafe(16), 0o600)  # the annex's own, as annex create makes
    pool.start_master(name, condor_config, elsewhere=True)


def check_htcondor_annex(pool: Pool, run_job, result) -> None:
    """Token fetch by the login user, an annex pilot joins and runs their job, a rogue pilot is refused."""
    start = time.monotonic()
    key = pool.config_val("ANNEX_TOKEN_KEY_NAME")
    collector = pool.config_val("ANNEX_COLLECTOR")
    host = pool.config_val("FULL_HOSTNAME")
    _fs_is_local_only(pool, key, result)
    token, identity = _fetch_annex_token(pool, key, result)
    # annex_create.py asks the annex collector for the schedd's name, and so does this test.
    schedds = pool.condor(["condor_status", "-pool", collector, "-schedd", "-af", "Name"], user=LOGIN_USER)
    names = schedds.stdout.split()
    if len(names) != 1:
        raise SmokeTestFailed(f"the annex collector {collector} lists schedds {names} ({schedds.stderr.strip()})")
    foreign = _foreign_token(pool, identity, key)
    for name, (_, whose) in ANNEX_NODES.items():
        _start_annex_node(pool, name, token if whose == "user" else foreign, collector, names[0], host)
    wanted = {f"slot1@{name}@{host}" for name, (_, whose) in ANNEX_NODES.items() if whose == "user"}

    def joined():
        ours = {slot: who for slot, who in _annex_slots(pool, collector).items()
                if slot.split("@")[1:2] and slot.split("@")[1] in ANNEX_NODES}
        return wanted <= ours.keys() and ours

    slots = wait_for("the annex nodes in the annex collector", joined, 90)
    result.timings["annex nodes join"] = time.monotonic() - start
    strangers = {slot: who for slot, who in slots.items() if who != identity}
    if strangers:
        raise SmokeTestFailed(f"annex nodes authenticated as someone else than the user's token: {strangers}")
    result.passed("annex pilot joined the annex collector with the user's token",
                  ", ".join(f"{slot} as {who}" for slot, who in sorted(slots.items())))
    run_job(ANNEX_TARGETING, r"slot1_\d+@annex-pilot@", "ran on the annex pilot (direct attach)")
    _rogue_refused(pool, collector, result)


def _rogue_refused(pool: Pool, collector: str, result) -> None:
    """The annex collector refuses the pilot whose token another key signed (and it is not listed)."""
    needle = "Failed to authenticate using IDTOKENS"
    logs = [pool.root / "var/log/condor/AP_Collector.log", pool.root / "var/lib/rogue-pilot/log/MasterLog"]

    def refused():
        return all(log.exists() and needle in log.read_text() for log in logs)

    wait_for("the annex collector to refuse the foreign-key token", refused, 30)
    listed = pool.condor(["condor_status", "-pool", collector, "-any", "-af", "Name"]).stdout
    if "rogue-pilot" in listed:
        raise SmokeTestFailed("a pilot holding a token signed by another key joined the annex collector")
    result.passed("pilot with a token signed by another key refused", f"{needle} (annex collector and pilot logs)")


def _annex_slots(pool: Pool, collector: str) -> dict[str, str]:
    """{slot name: the identity it authenticated as} in the annex collector."""
    listed = pool.condor(["condor_status", "-pool", collector, "-af", "Name", "AuthenticatedIdentity"]).stdout
    return dict(line.split()[:2] for line in listed.splitlines() if len(line.split()) >= 2)


def start_ec2_node(pool: Pool, tarball: dict[str, bytes]) -> None:
    """What an EC2 annex instance does with the tarball `htcondor annex create` had condor_annex put
    in S3 (HTCondor's condor-annex-ec2 unpacks it into /etc/condor): its config.d/, tokens.d/ and
    passwords.d/ unpacked into a stock install's /etc/NAME, nothing else; then HTCondor starts."""
    name, address = EC2_NODE
    config = tarball.get("config.d/00ec2-dynamic.config", b"").decode()
    condor_config = pool.lay_out_worker(name, address, 0, "00ec2-dynamic.config", config)
    for path, content in tarball.items():
        if not path.startswith("config.d/"):
            target = pool.root / "etc" / name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o600)
    pool.start_master(name, condor_config, elsewhere=True)


def ec2_node_joined(pool: Pool, creator: str, result) -> None:
    """The node start_ec2_node started reports to the annex collector as the annex's creator."""
    collector, host = pool.config_val("ANNEX_COLLECTOR"), pool.config_val("FULL_HOSTNAME")
    identity = f"{creator}@{pool.config_val('ANNEX_TOKEN_DOMAIN')}"
    slot = f"slot1@{EC2_NODE[0]}@{host}"
    who = wait_for("the EC2 annex node in the annex collector", lambda: _annex_slots(pool, collector).get(slot), 90)
    if who != identity:
        raise SmokeTestFailed(f"the EC2 annex node authenticated as {who}, not as its creator {identity}")
    result.passed("EC2 annex node configured only by condor_annex's tarball joined the annex collector",
                  f"{slot} as {identity}")
