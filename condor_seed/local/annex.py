"""The seed's reason to exist, proven with Debian's real `condor_annex` as the unprivileged login user.

Runs against a booted seed (see smoke.py) inside its instance network, with the cloud emulated
(cloud.py): `condor_annex -setup` with nothing but the instance role, `-check-setup`, then as far
into creating an annex as the emulator allows. Also that condor_annex itself explains a pool
password file the user cannot read, or one holding the wrong password.
"""
from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from .cloud import EmulatedCloud
from .pool import Pool

SETUP_TIMEOUT = 240  # -setup waits ~10 s between its looks at each of four stacks
STACKS = ("HTCondorAnnex-ConfigurationBucket", "HTCondorAnnex-LambdaFunctions", "HTCondorAnnex-InstanceProfile",
          "HTCondorAnnex-SecurityGroup")


class AnnexCheckFailed(Exception):
    """condor_annex did not do what a scientist on the seed needs."""


def _annex(pool: Pool, user: str, args: list[str], env: dict | None = None, timeout: float = 120):
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    proc = pool.condor([*prefix, "condor_annex", *args], user=user, timeout=timeout)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def setup_with_instance_role(pool: Pool, user: str, cloud: EmulatedCloud) -> str:
    """`condor_annex -setup` as the login user: the CloudFormation stacks, a key pair, user_config."""
    rc, out = _annex(pool, user, ["-setup"], timeout=SETUP_TIMEOUT)
    if rc or "Setup successful." not in out:
        raise AnnexCheckFailed(f"condor_annex -setup as {user} failed (rc={rc}): {out[-1500:]}")
    stacks = {s["StackName"]: s["StackStatus"] for s in cloud.client("cloudformation").describe_stacks()["Stacks"]}
    missing = [s for s in STACKS if stacks.get(s) != "CREATE_COMPLETE"]
    if missing:
        raise AnnexCheckFailed(f"-setup reported success but the emulator lacks {missing}: {stacks}")
    return out


def check_setup(pool: Pool, user: str) -> str:
    rc, out = _annex(pool, user, ["-check-setup"])
    if rc or "Your setup looks OK." not in out or "Checking security configuration... OK." not in out:
        raise AnnexCheckFailed(f"condor_annex -check-setup as {user} did not pass (rc={rc}): {out[-1500:]}")
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


def unreadable_password_is_explained(pool: Pool, user: str, root_only_file: str) -> str:
    """The seed before this change: SEC_PASSWORD_FILE root-only. condor_annex says so itself."""
    rc, out = _annex(pool, user, ["-check-setup"], env={"_CONDOR_SEC_PASSWORD_FILE": root_only_file})
    needle = f"Unable to open SEC_PASSWORD_FILE '{root_only_file}': Permission denied"
    if rc == 0 or needle not in out:
        raise AnnexCheckFailed(f"an unreadable password file was not reported by condor_annex: {out[-800:]}")
    return needle


def wrong_password_is_explained(pool: Pool, user: str, home: str) -> str:
    """A password file that is readable but wrong: the collector refuses the pool identity."""
    wrong = f"{home}/.condor/wrong_password"
    made = pool.condor(["sh", "-c", f"head -c 32 /dev/urandom | base64 | condor_store_cred -c add -f {wrong} -i -"],
                       user=user)
    if made.returncode:
        raise AnnexCheckFailed(f"could not make a wrong password file as {user}: {made.stdout + made.stderr}")
    rc, out = _annex(pool, user, ["-check-setup"], env={"_CONDOR_SEC_PASSWORD_FILE": wrong})
    needle = "We were not authorized to advertise to the collector."
    if needle not in out:
        raise AnnexCheckFailed(f"a wrong pool password was not reported by condor_annex: {out[-800:]}")
    return needle


def without_imdsv1(pool: Pool, user: str) -> str:
    """With token-less metadata refused (HttpTokens=required), condor_annex cannot use the role."""
    rc, out = _annex(pool, user, ["-check-setup"])
    if "Your setup looks OK." in out:
        raise AnnexCheckFailed(f"-check-setup passed although IMDSv1 is refused: {out[-800:]}")
    return _first_error(out)


def create_annex(pool: Pool, user: str, cloud: EmulatedCloud, pool_password: bytes,
                 name: str = "smoke-annex") -> str:
    """Ask for one on-demand worker, all the way: HTCondor's connectivity check (its own Lambda code,
    run from outside the VPC) reaches the seed's public COLLECTOR_HOST; the workers' configuration
    tarball in S3 holds the pool password and that COLLECTOR_HOST; the lease rule is set and the
    instance launched. The emulated instance never boots (no guest): the smoke test's local annex
    workers, configured the same way, stand in for it."""
    with open(pool.root / "etc/hosts", "a") as hosts:  # the buckets -setup made, by their virtual-host names
        hosts.write(cloud.bucket_hosts_line())
    rc, out = _annex(pool, user, ["-yes", "-count", "1", "-annex-name", name, "-duration", "1"], timeout=300)
    if rc or "Annex started." not in out:
        raise AnnexCheckFailed(f"condor_annex did not start the annex (rc={rc}): {out[-800:]}; "
                               f"connectivity check answered {cloud.connectivity_checks}")
    collector = f"COLLECTOR_HOST = {cloud.public_hostname}:9618"
    config, password = _worker_tarball(cloud, f"config-{name}.tar.gz")
    if collector not in config or password != pool_password:
        raise AnnexCheckFailed(f"the workers' tarball lacks {collector!r} or the seed's pool password: {config}")
    launched = [i for r in cloud.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    if len(launched) != 1 or not launched[0].get("IamInstanceProfile"):
        raise AnnexCheckFailed(f"expected one annex instance with the annex instance profile, got {launched}")
    return (f"annex started: connectivity check passed from outside, tarball ({collector}, pool password) "
            f"in S3, lease rule set, {launched[0]['InstanceId']} launched")


def _worker_tarball(cloud: EmulatedCloud, key: str) -> tuple[str, bytes]:
    """(00ec2-dynamic.config, password_file.pl) from the tarball condor_annex uploaded."""
    s3 = cloud.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("htcondorannex-config"))
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return files.get("00ec2-dynamic.config", b"").decode(), files.get("password_file.pl", b"")


def _first_error(out: str) -> str:
    lines = [line for line in out.splitlines() if re.search(r"fail|error|unable", line, re.I)]
    return (lines[0] if lines else out.splitlines()[-1] if out else "no output").strip()[:300]
