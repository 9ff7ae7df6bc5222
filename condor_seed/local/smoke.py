"""`invoke smoke-test --target local`: boot the seed from its image and prove a real pool works.

The seed boots in its own network namespace laid out like an EC2 instance's network (netns.py):
a private address on eth0, the public IPv4 routed to it but on no interface, the public hostname
resolving to the private address (EC2's split-horizon DNS), instance metadata on 169.254.169.254
and AWS endpoints emulated (cloud.py). Booting is done the way an instance does it: the first-boot
secret step, the annex users' password copies, the public-IP boot script against the metadata
service, then condor_master. The checks use HTCondor's own tools: the seed's daemons answer (with
no collector update timeouts), TCP_FORWARDING_HOST / COLLECTOR_HOST / region come from the
metadata; then per annex generation: gen-1 (condor_annex): the login user runs the real
`condor_annex -setup`, `-check-setup` and annex creation with only the instance role (annex.py),
an annex worker holding the pool password (and one holding only an IDTOKEN) joins, a job submitted
by an unprivileged user runs on a worker with the right output, and a worker with the wrong
password is refused; gen-2 (`htcondor annex`): the same EC2 path as the login user
(`htcondor annex setup`, `checksetup`, `create NAME TYPE@aws-ec2`, which run the real
`$(LIBEXEC)/condor_annex`), a node configured by nothing but the tarball it uploaded joins and runs
the user's job; the HPC pilot's checks: see annex_gen2.
Annex nodes run "elsewhere" (their own /tmp), as on another machine.
Authorization (both generations): a stranger's client on another address is refused READ and
WRITE; gen-1: the pool identity every annex worker holds cannot administer the seed.
"""
from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import manifest
from ..aws import seed_role
from ..log import progress
from ..fingerprint import fingerprint
from ..recipe import Recipe
from ..render import IMAGE_PATHS, MARKERS, render
from . import annex, annex_gen2, netns, rootfs
from .build import LOCAL_BUILDER, OUT_DIR
from .annex_gen2 import check_htcondor_annex
from .chroot import mounted, run_in
from .cloud import EmulatedCloud
from .netns import instance_network
from .pool import LOGIN_USER, Pool, SmokeTestFailed, render_local, wait_for, write
from .workarea import TREE, work_area

EMULATED_REGION = "us-west-2"  # the instance's public IP is a free TEST-NET-3 address per run (netns.py)
SEED_FQDN = f"{os.uname().nodename}.condor-seed.test"  # the .test domain is reserved: never a real host
WORKERS = {  # name: (address, shared port, kind)
    "annex-worker": ("127.0.0.3", 9619, "password"),
    "token-worker": ("127.0.0.5", 9621, "token"),
    "bad-worker": ("127.0.0.4", 9620, "wrong-password"),
}
OUTSIDER = ("outsider", "127.0.0.6")  # a stranger's client, unauthenticated, on another address
JOB_SCRIPT = """#!/bin/sh
echo "user=$(id -un) slot=$(sed -n 's/^Name = "\\(.*\\)"$/\\1/p' .machine.ad)"
echo "args=$*"
"""
JOB_SUBMIT = """\
executable = job.sh
arguments = one two
output = out.txt
error = err.txt
log = job.log
should_transfer_files = YES
{targeting}
queue
"""
GEN1_TARGETING = "+MayUseAWS = TRUE"  # condor_annex's workers START only such jobs
EC2_ANNEX_NAME = "smoke-annex"  # the annex the login user creates on (emulated) EC2


@dataclass
class SmokeResult:
    build_id: str
    checks: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    annex_actions: list[str] = field(default_factory=list)  # what iam/seed-instance-policy.json must allow

    def passed(self, name: str, detail: str = "") -> None:
        self.checks.append((name, detail))
        progress(f"  ok  {name}{': ' + detail if detail else ''}")


def latest_local_build(recipe: Recipe, out_dir: Path) -> tuple[Path, dict, Path]:
    path = manifest.path_for(recipe.name, out_dir / "manifests")
    build = manifest.find_build(manifest.load(path))
    if build.get("builder_type") != LOCAL_BUILDER:
        raise SmokeTestFailed(f"{path}: the last build is not a local image")
    image = Path(build["artifact_id"].removeprefix("local:"))
    if not image.exists():
        raise SmokeTestFailed(f"{image}: image file missing (run `invoke build-seed --target local` again)")
    return path, build, image


def built_from_other_sources(recipe: Recipe, build: dict) -> str | None:
    """A note when the image was not built from this checkout's recipe and templates (its checks
    follow this checkout): what to run so that they match again."""
    data = build.get("custom_data", {})
    if not data.get("fingerprint"):
        return None
    if fingerprint(render(recipe), data.get("base_image", ""), data.get("htcondor_version")) == data["fingerprint"]:
        return None
    return (f"note: {build.get('packer_run_uuid', 'the last build')} was built from another version of recipe "
            f"{recipe.name} or of the templates than this checkout's; if a check fails for that reason, rebuild: "
            f"invoke build-seed --target local --recipe {recipe.name}")


def _boot_step(pool: Pool, script: str, expect: str) -> str:
    proc = pool.run([f"{IMAGE_PATHS['libexec']}/{script}"], capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode or expect not in proc.stdout:
        raise SmokeTestFailed(f"{script} failed: {(proc.stdout + proc.stderr).strip()}")
    return proc.stdout.strip()


def _boot(root: Path, pool: Pool, cloud: EmulatedCloud, result: SmokeResult) -> None:
    """What the systemd units do on an instance, in their order; metadata at its real address."""
    start = time.monotonic()
    first = _boot_step(pool, "condor-seed-first-boot", MARKERS["first_boot"])
    users = _boot_step(pool, "condor-seed-annex-users", "can run condor_annex")
    _boot_step(pool, "condor-seed-public-ip", f"public-ip={cloud.net.public_ip}")
    # systemd's RuntimeDirectory would make these on an instance
    pool.run(["install", "-d", "-o", "condor", "-g", "condor", "/run/condor", "/run/lock/condor"])
    pool.start_master("seed")
    ready = pool.run([f"{IMAGE_PATHS['libexec']}/condor-seed-ready"], env={"CONDOR_SEED_READY_TIMEOUT": "60"},
                     capture_output=True, text=True, check=False, timeout=90)
    result.timings["boot to ready"] = time.monotonic() - start
    if ready.returncode or "collector negotiator schedd up" not in ready.stdout:
        raise SmokeTestFailed(f"seed daemons did not come up: {ready.stdout.strip()}")
    result.passed("first boot created the pool secrets", first.removeprefix(MARKERS["first_boot"]).strip())
    result.passed("login user got a private copy of the pool password", users.splitlines()[-1])
    result.passed("collector, negotiator and schedd answer", f"{result.timings['boot to ready']:.1f} s after boot")


def _check_instance_settings(root: Path, pool: Pool, cloud: EmulatedCloud, result: SmokeResult) -> None:
    """What the boot script took from the metadata, and that the seed's own daemons did not stumble
    over the public address being on none of its interfaces."""
    wanted = {"TCP_FORWARDING_HOST": cloud.net.public_ip, "COLLECTOR_HOST": f"{cloud.public_hostname}:9618",
              "ANNEX_DEFAULT_AWS_REGION": cloud.region}
    got = {knob: pool.config_val(knob) for knob in wanted}
    if got != wanted:
        raise SmokeTestFailed(f"settings from the instance metadata: got {got}, expected {wanted}")
    result.passed("TCP_FORWARDING_HOST, COLLECTOR_HOST and region from the instance metadata",
                  ", ".join(got.values()))
    timeouts = [line for log in (root / "var/log/condor").glob("*Log") for line in log.read_text().splitlines()
                if "Failed to send" in line and "collector" in line.lower() or "timeout reading" in line]
    if timeouts:
        raise SmokeTestFailed(f"collector update timeouts in the seed's logs: {timeouts[:3]}")
    result.passed("no collector update timeouts in the seed's logs")


def _annex_as_login_user(pool: Pool, recipe: Recipe, cloud: EmulatedCloud, result: SmokeResult,
                         before_create=None) -> dict[str, bytes]:
    """The annex tool of the recipe's generation, as the image's login user with only the instance
    role; `before_create(annex_name)` runs before the annex is asked for (gen-2 wants a job for it).
    Returns the workers' configuration tarball condor_annex uploaded."""
    user = annex.AnnexUser(pool, recipe.login_user, recipe.annex_generation)
    setup, check = " ".join(user.command("setup")), " ".join(user.command("check-setup"))
    start = time.monotonic()
    annex.setup_with_instance_role(user, cloud)
    result.passed(f"{setup} as {user.name} with only the instance role", "Setup successful.")
    annex.check_setup(user)
    result.timings[f"{user.tool} setup, check-setup"] = time.monotonic() - start
    result.passed(f"{check} as {user.name}", "Your setup looks OK.")
    result.passed(f"{user.tool} explains an unreadable SEC_PASSWORD_FILE",
                  annex.unreadable_password_is_explained(user, recipe.pool_password_file))
    if recipe.annex_generation == "condor_annex":  # gen-2 workers hold a token, not the pool password
        result.passed("condor_annex explains a wrong pool password", annex.wrong_password_is_explained(user))
    password = (pool.root / recipe.pool_password_file.lstrip("/")).read_bytes()
    start = time.monotonic()
    if before_create:
        before_create(EC2_ANNEX_NAME)
    detail, tarball = annex.create_annex(user, cloud, password, EC2_ANNEX_NAME)
    result.timings[f"{user.tool} create"] = time.monotonic() - start
    result.passed(f"{user.tool} creates an annex", detail)
    result.passed("the emulator saw the role's key and session token", annex.signed_with_role(cloud))
    result.annex_actions = cloud.actions_by_role()
    beyond = sorted(set(result.annex_actions) - seed_role.allowed_actions())
    if beyond:
        raise SmokeTestFailed(f"{user.tool} used the instance role for actions iam/seed-instance-policy.json "
                              f"does not allow: {beyond}")
    result.passed(f"IAM actions {user.tool} used the role for, all in iam/seed-instance-policy.json",
                  " ".join(result.annex_actions))
    return tarball


def _imdsv1_refused(root: Path, pool: Pool, recipe: Recipe, cloud: EmulatedCloud, result: SmokeResult) -> None:
    """An instance launched with HttpTokens=required: the boot script warns (console and login
    message), and condor_annex indeed cannot use the role. Allowed again, the warning goes."""
    motd = root / IMAGE_PATHS["imds_motd"].lstrip("/")
    cloud.imds.imdsv1 = False
    try:
        boot = _boot_step(pool, "condor-seed-public-ip", "WARNING imds-v1-refused")
        if "--http-tokens optional" not in boot or not motd.exists():
            raise SmokeTestFailed(f"IMDSv1 refused but no fix on the console / login message: {boot}")
        stopped = annex.without_imdsv1(annex.AnnexUser(pool, recipe.login_user, recipe.annex_generation))
    finally:
        cloud.imds.imdsv1 = True
    boot = _boot_step(pool, "condor-seed-public-ip", MARKERS["boot"])
    if "WARNING" in boot or motd.exists():
        raise SmokeTestFailed(f"the IMDSv1 warning stayed after IMDSv1 was allowed again: {boot}")
    result.passed("IMDSv1 refused: console warning + login message with the fix", stopped)


def _workers_join(root: Path, pool: Pool, recipe: Recipe, collector: str, result: SmokeResult) -> None:
    """collector: what condor_annex writes into every worker's config, the seed's COLLECTOR_HOST."""
    start = time.monotonic()
    token = pool.condor(["condor_token_create", "-identity", "condor@password", "-key",
                         Path(recipe.pool_signing_key_file).name])
    if token.returncode:
        raise SmokeTestFailed(f"condor_token_create failed: {token.stderr.strip()}")
    password = root / recipe.pool_password_file.lstrip("/")
    for name, (address, port, kind) in WORKERS.items():
        config = pool.add_worker(name, address, port, collector, kind, password_from=password, token=token.stdout)
        pool.start_master(name, config, elsewhere=True)
    wanted = {f"slot1@annex-worker@{SEED_FQDN}", f"slot1@token-worker@{SEED_FQDN}"}

    def joined():
        listed = set(pool.condor(["condor_status", "-af", "Name"]).stdout.split())
        return wanted <= listed and listed

    listed = wait_for("the annex workers in condor_status", joined, 90)
    result.timings["workers join"] = time.monotonic() - start
    result.passed("annex workers joined (pool password; IDTOKEN)", ", ".join(sorted(listed)))


def _login_user(root: Path) -> None:
    """The scientist's unprivileged account on the seed."""
    if not (root / "home" / LOGIN_USER).exists():
        run_in(root, ["useradd", "-m", "-s", "/bin/sh", LOGIN_USER], capture_output=True)


def _job_runs(pool: Pool, result: SmokeResult, targeting: str = GEN1_TARGETING,
              slot: str = r"slot1_\d+@(annex|token)-worker@", where: str = "ran on an annex worker") -> None:
    """The login user submits a job (`targeting`: the submit lines that aim it at annex nodes); it
    must run on a slot matching `slot` and write the right output."""
    start = time.monotonic()
    job = _submit_job(pool, LOGIN_USER, "job", "condor_submit job.sub", targeting)
    _job_ran(job, LOGIN_USER, slot, f"job by unprivileged user {LOGIN_USER} {where}", result)
    result.timings["job round trip"] = time.monotonic() - start


def _submit_job(pool: Pool, user: str, folder: str, submit: str, targeting: str = "") -> Path:
    """The job in ~USER/FOLDER, submitted by the user with `submit` (a command run in that folder)."""
    job = pool.root / "home" / user / folder
    write(job / "job.sh", JOB_SCRIPT, 0o755)
    write(job / "job.sub", JOB_SUBMIT.format(targeting=targeting))
    run_in(pool.root, ["chown", "-R", f"{user}:{user}", f"/home/{user}/{folder}"])
    submitted = pool.condor(["sh", "-c", f"cd ~/{folder} && {submit}"], user=user)
    if submitted.returncode:
        raise SmokeTestFailed(f"{submit} as {user} failed: {(submitted.stdout + submitted.stderr).strip()}")
    return job


def _job_ran(job: Path, user: str, slot: str, check: str, result: SmokeResult) -> None:
    """The job in `job` finishes on a slot matching `slot`, run as `user`, with the right output."""
    log = job / "job.log"
    wait_for("the job to finish", lambda: log.exists() and "Job terminated" in log.read_text(), 120)
    output = (job / "out.txt").read_text()
    if not re.search(rf"^user={user} slot={slot}", output, re.M) or "args=one two" not in output:
        raise SmokeTestFailed(f"unexpected job output: {output!r}")
    result.passed(check, output.splitlines()[0])


def _wrong_secret_refused(root: Path, pool: Pool, result: SmokeResult) -> None:
    collector_log = root / "var/log/condor/CollectorLog"
    needle = "Failed to authenticate using PASSWORD"
    wait_for("the collector to refuse the wrong password",
             lambda: collector_log.exists() and needle in collector_log.read_text(), 30)
    everything = pool.condor(["condor_status", "-any", "-af", "Name"]).stdout
    if "bad-worker" in everything:
        raise SmokeTestFailed("a worker holding the wrong pool password joined the pool")
    result.passed("worker with the wrong password refused", needle)


def _daemon_address(root: Path, pool: Pool, knob: str) -> str:
    """A seed daemon's address, from the file it writes (the collector also lists the workers' masters)."""
    path = pool.config_val(knob)
    address = (root / path.lstrip("/")).read_text().splitlines()[0] if path and (root / path.lstrip("/")).exists() else ""
    if not address.startswith("<"):
        raise SmokeTestFailed(f"no address in the seed's {knob} ({path or 'undefined'})")
    return address


SEED_LOGS = "var/log/condor"
REFUSAL = re.compile(r"PERMISSION DENIED|authentication of \S+ failed|did not result in a valid mapped user name")


def _refusal_seen(root: Path, pool: Pool, args: list[str], address: str, **how) -> str:
    """Run a client command; it must fail and the seed's own logs must record refusing `address`
    (not a network error or a missing daemon). Returns the seed's log line."""
    logs = sorted((root / SEED_LOGS).glob("*Log"))
    marks = {log: log.stat().st_size for log in logs}
    probe = pool.condor(args, **how)

    def refusal():
        for log in logs:
            with open(log, errors="replace") as fh:
                fh.seek(marks[log])
                for line in fh:
                    if address in line and REFUSAL.search(line):
                        return line.strip()
        return None

    try:
        line = wait_for(f"the seed to log refusing {address}", refusal, 10)
    except TimeoutError:
        line = None
    if probe.returncode == 0 or not line:
        raise SmokeTestFailed(f"{' '.join(args[:1])} from {address} was not refused by the seed: exit "
                              f"{probe.returncode}, {(probe.stdout + probe.stderr).strip()[-400:]}")
    return line


def _outsider_refused(root: Path, pool: Pool, public_ip: str, result: SmokeResult) -> None:
    """An unauthenticated client on another address gets neither READ nor WRITE."""
    name, address = OUTSIDER
    config = pool.add_client(name, address, f"{public_ip}:9618")
    schedd = _daemon_address(root, pool, "SCHEDD_ADDRESS_FILE")
    probes = {
        "READ collector (condor_status)": ["condor_status", "-any", "-af", "Name"],
        "READ schedd (condor_q: job arguments, environment)": ["condor_q", "-addr", schedd, "-allusers", "-af",
                                                               "Args", "Environment"],
        "WRITE schedd (condor_rm)": ["condor_rm", "-addr", schedd, "-all"],
    }
    for args in probes.values():
        _refusal_seen(root, pool, args, address, config=config)
    result.passed(f"unauthenticated client on {address} refused", "; ".join(probes))


def _worker_cannot_administer(root: Path, pool: Pool, result: SmokeResult) -> None:
    """The pool password makes a worker a daemon of the pool, not the seed's administrator."""
    name = next(iter(WORKERS))
    address = WORKERS[name][0]
    master = _daemon_address(root, pool, "MASTER_ADDRESS_FILE")
    # the worker's own tools and secret, from its address; not FS (a real worker is remote)
    as_worker = {"config": f"/etc/{name}/condor_config",
                 "env": {"_CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS": "PASSWORD", "_CONDOR_BIND_ALL_INTERFACES": "False"}}
    read = pool.condor(["condor_status", "-schedd", "-af", "Name"], **as_worker)
    if read.returncode or not read.stdout.strip():
        raise SmokeTestFailed(f"the pool identity could not even read: {(read.stdout + read.stderr).strip()}")
    line = _refusal_seen(root, pool, ["condor_reconfig", "-addr", master], address, **as_worker)
    denied = re.search(r"PERMISSION DENIED to (\S+) .*access level ADMINISTRATOR", line)
    if not denied or denied.group(1).split("@")[0] not in ("condor", "condor_pool"):
        raise SmokeTestFailed(f"the seed refused the worker's condor_reconfig, but not as its pool identity: {line}")
    result.passed("a worker's pool identity may read but not administer the seed",
                  f"condor_reconfig as {denied.group(1)}: ADMINISTRATOR denied")


def _instance_facts(root: Path, recipe: Recipe, cloud: EmulatedCloud) -> None:
    """What the cloud provides and the image does not hold: names (the public hostname resolves to
    the private address inside the VPC), the login user, trusted endpoints."""
    private_ip = cloud.net.private_ip
    # A cloud instance's name is fully qualified; HTCondor finds a daemon by a dotless name only
    # through DNS (get_fqdn_from_hostname), which a pilot needs to attach to the seed's schedd.
    write(root / "etc/hosts", f"127.0.0.1\tlocalhost\n{private_ip}\t{SEED_FQDN}\t{os.uname().nodename}\n"
                              f"{private_ip}\t{cloud.public_hostname}\n{cloud.hosts_line()}")
    write(root / "etc/condor/config.d/90-instance.config", render_local("seed-instance.config.j2"))
    bundle = root / "etc/ssl/certs/ca-certificates.crt"  # AWS's real CAs are trusted there
    bundle.write_text((bundle.read_text() if bundle.exists() else "") + cloud.ca_pem)
    # cloud-init makes the login user on first boot, before condor-seed-first-boot runs
    run_in(root, ["useradd", "-m", "-s", "/bin/bash", recipe.login_user], capture_output=True)


def _gen2_checks(root: Path, pool: Pool, recipe: Recipe, cloud: EmulatedCloud, result: SmokeResult) -> None:
    """`htcondor annex`: the EC2 path as the login user (setup, check-setup, create, which runs
    condor_annex), an EC2 annex node configured by condor_annex's own tarball runs the user's job;
    the HPC pilot's checks (annex_gen2) meanwhile."""
    user = recipe.login_user
    jobs = {}

    def job_for(annex_name: str) -> None:  # `htcondor annex create` wants the annex's jobs queued first
        jobs["ec2"] = _submit_job(pool, user, "ec2-job", f"htcondor job submit --annex-name {annex_name} job.sub")

    tarball = _annex_as_login_user(pool, recipe, cloud, result, before_create=job_for)
    _imdsv1_refused(root, pool, recipe, cloud, result)
    start = time.monotonic()
    annex_gen2.start_ec2_node(pool, tarball)
    check_htcondor_annex(pool, lambda *job: _job_runs(pool, result, *job), result)
    annex_gen2.ec2_node_joined(pool, user, result)
    _job_ran(jobs["ec2"], user, rf"slot1_\d+@{annex_gen2.EC2_NODE[0]}@",
             f"job by login user {user} ran on the EC2 annex node (direct attach)", result)
    result.timings["EC2 annex node: start to job done"] = time.monotonic() - start


def _boot_and_check(image: Path, work: Path, recipe: Recipe, result: SmokeResult) -> None:
    root = work / TREE
    rootfs.unpack_image(image, root)
    with instance_network() as net, EmulatedCloud(net, region=EMULATED_REGION) as cloud, mounted(root) as root:
        _instance_facts(root, recipe, cloud)
        pool = Pool(root, work, prefix=net.prefix)
        try:
            _boot(root, pool, cloud, result)
            _check_instance_settings(root, pool, cloud, result)
            _login_user(root)
            if recipe.annex_generation == "htcondor-annex":
                _gen2_checks(root, pool, recipe, cloud, result)
            else:
                _annex_as_login_user(pool, recipe, cloud, result)
                _imdsv1_refused(root, pool, recipe, cloud, result)
                _workers_join(root, pool, recipe, f"{cloud.public_hostname}:9618", result)
                _job_runs(pool, result)
                _wrong_secret_refused(root, pool, result)
                _worker_cannot_administer(root, pool, result)
            _outsider_refused(root, pool, cloud.net.public_ip, result)
        finally:
            t = time.monotonic()
            pool.stop()
            result.timings["teardown"] = time.monotonic() - t


def smoke_test_local(recipe: Recipe, out_dir: Path | None = None, keep_work: bool = False) -> SmokeResult:
    rootfs.require_root_tools()
    missing = [tool for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux")) if not shutil.which(tool)]
    if missing:
        raise SmokeTestFailed(f"missing {', '.join(missing)}: apt-get install iproute2 util-linux (or ./scripts/setup)")
    if importlib.util.find_spec("moto") is None:
        raise SmokeTestFailed("missing moto (the emulated cloud): pip install -e '.[local]' (or ./scripts/setup)")
    stale = netns.remove_leftovers()
    if stale:
        progress(f"removed {len(stale)} network namespace(s) a killed run left: {', '.join(stale)}")
    out_dir = Path(out_dir or OUT_DIR)
    manifest_path, build, image = latest_local_build(recipe, out_dir)
    result = SmokeResult(build["packer_run_uuid"])
    progress(f"smoke test of {image.name}: unpack, boot, annex workers, a job")
    stale = built_from_other_sources(recipe, build)
    if stale:
        progress(stale)
    start = time.monotonic()
    outcome, name = "failed", f"smoke-{result.build_id}-{secrets.token_hex(2)}"
    try:
        with work_area(out_dir / "work", name, keep=keep_work) as work:
            _boot_and_check(image, work, recipe, result)
        outcome = "passed"
    except TimeoutError as exc:
        hint = f"logs: {work / TREE}/var/log/condor" if keep_work else "rerun with --keep-work to keep the logs"
        raise SmokeTestFailed(f"{exc} ({hint})") from None
    finally:
        manifest.set_result(manifest_path, result.build_id, "smoke_test", outcome)
    result.timings["total"] = time.monotonic() - start
    progress(f"smoke test passed in {result.timings['total']:.1f} s")
    return result
