"""A gen-2 seed (HTCondor 25.x, `htcondor annex`) on real daemons: Debian sid's `condor` package,
baked by the same bake script, booted like an instance, used the way a scientist uses it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from condor_seed.local.smoke import SEED_FQDN

pytestmark = pytest.mark.root

GEN2_CHECKS = (
    "FS proves local users only: from another machine no token and nothing above READ",
    "condor_token_fetch as login user alice (key AP)",
    "annex pilot joined the annex collector with the user's token",
    "job by unprivileged user alice ran on the annex pilot (direct attach)",
    "pilot with a token signed by another key refused",
)
# The EC2 path: `htcondor annex` running the real $(LIBEXEC)/condor_annex as the login user, with
# only the instance role, then a node configured by nothing but the tarball it uploaded.
EC2_CHECKS = (
    "htcondor annex setup as admin with only the instance role: Setup successful.",
    "htcondor annex checksetup as admin: Your setup looks OK.",
    "htcondor annex explains an unreadable SEC_PASSWORD_FILE: Unable to open SEC_PASSWORD_FILE "
    "'/etc/condor/condor_pool_password': Permission denied",
    "htcondor annex creates an annex: annex started: tarball (COLLECTOR_HOST = <203.0.113.",
    f"admin@{SEED_FQDN}'s token (key AP), the user's own annex password, not the pool password) in S3",
    "the emulator saw the role's key and session token",
    "IAM actions htcondor annex used the role for, all in iam/seed-instance-policy.json",
    "IMDSv1 refused: console warning + login message with the fix",
    "EC2 annex node configured only by condor_annex's tarball joined the annex collector",
    "job by login user admin ran on the EC2 annex node (direct attach): user=admin slot=slot1_1@ec2-annex@",
)


def _last_build(out: Path) -> dict:
    data = json.loads((out / "manifests/debian-sid-local.json").read_text())
    return next(b for b in data["builds"] if b["packer_run_uuid"] == data["last_run_uuid"])


def test_sid_build_runs_htcondor_25(sid_out):
    data = _last_build(sid_out)["custom_data"]
    assert data["htcondor_version"].startswith("25.") and data["secret_scan"] == "passed"


def test_htcondor_annex_works_for_the_login_user(sid_out, invoke):
    proc = invoke("smoke-test", "--target", "local", "--recipe", "debian-sid-local", "--out", str(sid_out),
                  timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for check in ("collector, negotiator and schedd answer", "TCP_FORWARDING_HOST, COLLECTOR_HOST and region from the instance metadata",
                  *GEN2_CHECKS, *EC2_CHECKS):
        assert check in proc.stderr, check
    assert _last_build(sid_out)["custom_data"]["smoke_test"] == "passed"
