"""The seed's reason to exist, proven with the real annex tool as the unprivileged login user.

Runs against a booted seed (see smoke.py) inside its instance network, with the cloud emulated
(cloud.py): setup with nothing but the instance role, check-setup, then as far into creating an
annex on EC2 as the emulator allows. Also that the tool itself explains a pool password file the
user cannot read (and, gen-1, one holding the wrong password).

Which tool follows from the seed's annex generation (Recipe.annex_generation): `condor_annex`
(≤ 24.0), or `htcondor annex` (24.11+), whose EC2 path runs `$(LIBEXEC)/condor_annex` (HTCondor
v25.0.x, src/condor_tools/htcondor_cli/annex.py: `setup` and `checksetup` run it with `-setup` /
`-check-setup`; annex_create.py `invoke_condor_annex`: `create NAME TYPE@aws-ec2` runs it with
`-yes -annex-name NAME -count N -request-id ID -aws-on-demand-instance-type TYPE -duration H`).
`htcondor annex setup` and `checksetup` exit 0 whatever condor_annex says, so every check here
reads what the tool says.
"""
from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from dataclasses import dataclass

from .cloud import EmulatedCloud
from .pool import Pool

SETUP_TIMEOUT = 240  # -setup waits ~10 s between its looks at each of four stacks
STACKS = ("HTCondorAnnex-ConfigurationBucket", "HTCondorAnnex-LambdaFunctions", "HTCondorAnnex-InstanceProfile",
          "HTCondorAnnex-SecurityGroup")
INSTANCE_TYPE = "m4.large"  # condor_annex's default on-demand type; `htcondor annex` names it as the queue
# What the login user types, per annex generation (Recipe.annex_generation).
COMMANDS = {
    "condor_annex": {
        "setup": ["condor_annex", "-setup"],
        "check-setup": ["condor_annex", "-check-setup"],
        "create": ["condor_annex", "-yes", "-count", "1", "-annex-name", "{name}", "-duration", "1"],
    },
    "htcondor-annex": {
        "setup": ["htcondor", "annex", "setup"],
        "check-setup": ["htcondor", "annex", "checksetup"],
        # the queue@system form of 25.0 LTS; later feature releases need ANNEX_USE_OLD_CREATE (the seed sets it)
        "create": ["htcondor", "annex", "create", "{name}", f"{INSTANCE_TYPE}@aws-ec2", "--nodes", "1",
                   "--lifetime", "3600"],
    },
}
TOOL = {"condor_annex": "condor_annex", "htcondor-annex": "htcondor annex"}


class AnnexCheckFailed(Exception):
    """The annex tool did not do what a scientist on the seed needs."""


@dataclass(frozen=True)
class AnnexUser:
    """A login user on the seed, driving the annex tool of the seed's generation."""
    pool: Pool
    name: str
    generation: str  # Recipe.annex_generation

    @property
    def home(self) -> str:
        return f"/home/{self.name}"

    @property
    def tool(self) -> str:
        return TOOL[self.generation]

    def command(self, verb: str, **fill) -> list[str]:
        return [word.format(**fill) for word in COMMANDS[self.generation][verb]]

    def run(self, verb: str, env: dict | None = None, timeout: float = 120, **fill) -> tuple[int, str]:
        prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        proc = self.pool.condor([*prefix, *self.command(verb, **fill)], user=self.name, timeout=timeout)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def config_val(self, knob: str) -> str:
        return self.pool.config_val(knob, user=self.name)


def setup_with_instance_role(user: AnnexUser, cloud: EmulatedCloud) -> str:
    """Setup as the login user: the CloudFormation stacks, a key pair, user_config."""
    rc, out = user.run("setup", timeout=SETUP_TIMEOUT)
    if rc or "Setup successful." not in out:
        raise AnnexCheckFailed(f"{' '.join(user.command('setup'))} as {user.name} failed (rc={rc}): {out[-1500:]}")
    stacks = {s["StackName"]: s["StackStatus"] for s in cloud.client("cloudformation").describe_stacks()["Stacks"]}
    missing = [s for s in STACKS if stacks.get(s) != "CREATE_COMPLETE"]
    if missing:
        raise AnnexCheckFailed(f"setup reported success but the emulator lacks {missing}: {stacks}")
    return out


def check_setup(user: AnnexUser) -> str:
    rc, out = user.run("check-setup")
    wanted = ["Your setup looks OK."]
    if user.generation == "condor_annex":  # 25.0 dropped check-setup's look at the collector (annex-setup.cpp)
        wanted.append("Checking security configuration... OK.")
    if rc or any(w not in out for w in wanted):
        raise AnnexCheckFailed(f"{' '.join(user.command('check-setup'))} as {user.name} did not pass (rc={rc}): "
                               f"{out[-1500:]}")
    return out


def signed_with_role(cloud: EmulatedCloud) -> str:
    """The emulator must have seen requests signed with the role's key id *and* its session token."""
    by_role = cloud.signed_by_role()
    others = [r for r in cloud.requests if r not in by_role and r.access_key_id != "emulator-admin"]
    if not by_role or others:
        raise AnnexCheckFailed(f"requests not signed with the instance role's credentials: {others[:3]} "
                               f"({len(by_role)} signed by the role)")
    services = sorted({r.service for r in by_role})
    return f"{len(by_role)} requests to {', '.join(services)} signed with {cloud.role.access_key_id} + session token"


def unreadable_password_is_explained(user: AnnexUser, root_only_file: str) -> str:
    """The seed before this change: SEC_PASSWORD_FILE root-only. condor_annex says so itself (in
    25.x too: check-setup still opens it, though the EC2 annex no longer ships it)."""
    _, out = user.run("check-setup", env={"_CONDOR_SEC_PASSWORD_FILE": root_only_file})
    needle = f"Unable to open SEC_PASSWORD_FILE '{root_only_file}': Permission denied"
    if needle not in out or "Your setup looks OK." in out:
        raise AnnexCheckFailed(f"an unreadable password file was not reported by {user.tool}: {out[-800:]}")
    return needle


def wrong_password_is_explained(user: AnnexUser) -> str:
    """Gen-1: a password file that is readable but wrong: the collector refuses the pool identity.
    (25.0's check-setup no longer asks the collector, and its EC2 annex authenticates with a token.)"""
    wrong = f"{user.home}/.condor/wrong_password"
    made = user.pool.condor(["sh", "-c", f"head -c 32 /dev/urandom | base64 | condor_store_cred -c add -f {wrong} -i -"],
                            user=user.name)
    if made.returncode:
        raise AnnexCheckFailed(f"could not make a wrong password file as {user.name}: {made.stdout + made.stderr}")
    _, out = user.run("check-setup", env={"_CONDOR_SEC_PASSWORD_FILE": wrong})
    needle = "We were not authorized to advertise to the collector."
    if needle not in out:
        raise AnnexCheckFailed(f"a wrong pool password was not reported by {user.tool}: {out[-800:]}")
    return needle


def without_imdsv1(user: AnnexUser) -> str:
    """With token-less metadata refused (HttpTokens=required), condor_annex cannot use the role."""
    _, out = user.run("check-setup")
    if "Your setup looks OK." in out:
        raise AnnexCheckFailed(f"check-setup passed although IMDSv1 is refused: {out[-800:]}")
    return _first_error(out)


def create_annex(user: AnnexUser, cloud: EmulatedCloud, pool_password: bytes,
                 name: str = "smoke-annex") -> tuple[str, dict[str, bytes]]:
    """Ask for one on-demand worker, all the way to the instance; returns (what was proven, the
    workers' configuration tarball as {member path: content}).

    Gen-1: HTCondor's connectivity check (its own Lambda code, run from outside the VPC) reaches the
    seed's public COLLECTOR_HOST; the tarball holds the pool password and that COLLECTOR_HOST.
    Gen-2 (`htcondor annex create`, which wants a job for the annex in the queue first): no
    connectivity check (25.0 removed it); the tarball holds ANNEX_COLLECTOR, the user's own token
    (signed by the AP key) and the user's own annex password, never the pool password.
    Both: the lease rule is set and the instance launched with the annex instance profile. The
    emulated instance never boots (no guest): a local node stands in for it (smoke.py)."""
    with open(user.pool.root / "etc/hosts", "a") as hosts:  # the buckets setup made, by their virtual-host names
        hosts.write(cloud.bucket_hosts_line())
    rc, out = user.run("create", timeout=300, name=name)
    if rc or "Annex started." not in out:
        raise AnnexCheckFailed(f"{user.tool} did not start the annex (rc={rc}): {out[-800:]}; "
                               f"connectivity check answered {cloud.connectivity_checks}")
    files = _worker_tarball(cloud, f"config-{name}.tar.gz")
    if user.generation == "condor_annex":
        shipped = _gen1_tarball(files, cloud, pool_password)
    else:
        shipped = _gen2_tarball(files, user, name, pool_password)
    launched = [i for r in cloud.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    if len(launched) != 1 or not launched[0].get("IamInstanceProfile") or launched[0]["InstanceType"] != INSTANCE_TYPE:
        raise AnnexCheckFailed(f"expected one {INSTANCE_TYPE} annex instance with the annex instance profile, "
                               f"got {launched}")
    checked = "connectivity check passed from outside, " if user.generation == "condor_annex" else ""
    return (f"annex started: {checked}tarball ({shipped}) in S3, lease rule set, {launched[0]['InstanceId']} "
            f"launched"), files


def _gen1_tarball(files: dict[str, bytes], cloud: EmulatedCloud, pool_password: bytes) -> str:
    collector = f"COLLECTOR_HOST = {cloud.public_hostname}:9618"
    config = _member(files, "00ec2-dynamic.config").decode()
    if collector not in config or _member(files, "password_file.pl") != pool_password:
        raise AnnexCheckFailed(f"the workers' tarball lacks {collector!r} or the seed's pool password: {config}")
    return f"{collector}, pool password"


def _gen2_tarball(files: dict[str, bytes], user: AnnexUser, name: str, pool_password: bytes) -> str:
    """condor_annex 25 (annex.cpp createConfigTarball): config.d/00ec2-dynamic.config reporting to
    ANNEX_COLLECTOR (the seed's public address) and attaching to its schedd, tokens.d/ the user's
    token from condor_token_fetch -key $(ANNEX_TOKEN_KEY_NAME), passwords.d/POOL the user's
    ~/.condor/annex_password_file (made by `htcondor annex create`)."""
    annex_collector, key = user.config_val("ANNEX_COLLECTOR"), user.config_val("ANNEX_TOKEN_KEY_NAME")
    identity = f"{user.name}@{user.config_val('ANNEX_TOKEN_DOMAIN')}"
    config = files.get("config.d/00ec2-dynamic.config", b"").decode()
    collector = f"COLLECTOR_HOST = <{annex_collector}>"
    if collector not in config or f'AnnexName = "{name}"' not in config \
            or "STARTD_DIRECT_ATTACH_SCHEDD_NAME = " not in config:
        raise AnnexCheckFailed(f"the EC2 annex config lacks {collector!r}, its name or the direct attach: {config}")
    token = files.get(f"tokens.d/{name}.{identity}", b"").decode()
    header, claims = (_jwt_part(token, i) for i in (0, 1))
    if header.get("kid") != key or claims.get("sub") != identity:
        raise AnnexCheckFailed(f"the EC2 annex token is not {user.name}'s signed by key {key}: {header} {claims} "
                               f"(tarball holds {sorted(files)})")
    password = files.get("passwords.d/POOL")
    own = (user.pool.root / user.home.lstrip("/") / ".condor/annex_password_file").read_bytes()
    if not password or password != own or password == pool_password:
        raise AnnexCheckFailed("the EC2 annex's passwords.d/POOL is not the user's own annex password "
                               "(or it is the seed's pool password)")
    return f"{collector}, {identity}'s token (key {key}), the user's own annex password, not the pool password"


def _jwt_part(token: str, index: int) -> dict:
    try:
        part = token.strip().split(".")[index]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}


def _worker_tarball(cloud: EmulatedCloud, key: str) -> dict[str, bytes]:
    """The tarball condor_annex uploaded: {member path: content} (regular files only)."""
    s3 = cloud.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("htcondorannex-config"))
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _member(files: dict[str, bytes], basename: str) -> bytes:
    return next((content for path, content in files.items() if path.rsplit("/", 1)[-1] == basename), b"")


def _first_error(out: str) -> str:
    lines = [line for line in out.splitlines() if re.search(r"fail|error|unable", line, re.I)]
    return (lines[0] if lines else out.splitlines()[-1] if out else "no output").strip()[:300]
