"""The local target end to end, for real: debootstrap, the rendered bake script in a chroot, the
secret scan, the packed image, then a seed booted from it running a real HTCondor pool."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from condor_seed.local.chroot import mounts_under, processes_in
from condor_seed.local.rootfs import sha256_file
from condor_seed.paths import PROJECT_DIR

pytestmark = pytest.mark.root


def _manifest(out: Path) -> dict:
    data = json.loads((out / "manifests/debian13-local.json").read_text())
    return next(b for b in data["builds"] if b["packer_run_uuid"] == data["last_run_uuid"])


def _nothing_left(out: Path) -> None:
    assert mounts_under(out) == [], "every mount is undone"
    work = out / "work"
    assert not work.exists() or not any(work.iterdir()), "work trees are removed"
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _root_of(pid).startswith(str(out))]


def _root_of(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return ""


def test_build_writes_image_and_manifest(local_out):
    build = _manifest(local_out)
    image = Path(build["artifact_id"].removeprefix("local:"))
    data = build["custom_data"]
    assert build["builder_type"] == "condor-seed.local" and image.exists()
    assert data["image_sha256"] == sha256_file(image)
    assert int(data["image_bytes"]) == image.stat().st_size and int(data["tree_bytes"]) > int(data["image_bytes"])
    assert data["secret_scan"] == "passed" and data["htcondor_version"].startswith("23.")
    assert data["fingerprint"].startswith("sha256:") and data["recipe"] == "debian13-local"
    listing = subprocess.run(["tar", "--zstd", "-tf", str(image)], capture_output=True, text=True, check=True).stdout
    names = set(listing.split())
    assert "./etc/condor/config.d/30-seed-annex-security.config" in names
    assert "./usr/libexec/condor-seed/condor-seed-public-ip" in names
    for secret in ("./etc/condor/condor_pool_password", "./etc/condor/passwords.d/POOL"):
        assert secret not in names, "pool secrets are made at first boot, never baked"
    assert not [n for n in names if "ssh_host_" in n or n.endswith("authorized_keys")]
    _nothing_left(local_out)


def test_build_writes_a_validated_sbom_of_what_dpkg_installed(local_out):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    data = _manifest(local_out)["custom_data"]
    sbom_path = Path(data["sbom"])
    assert sbom_path.parent == local_out / "sbom" and sha256_file(sbom_path) == data["sbom_sha256"]
    text = sbom_path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    purls = [c["purl"] for c in json.loads(text)["components"]]
    # the image's own dpkg database, read from the packed image, is the reference
    image = Path(_manifest(local_out)["artifact_id"].removeprefix("local:"))
    status = subprocess.run(["tar", "--zstd", "-xOf", str(image), "./var/lib/dpkg/status"], capture_output=True,
                            text=True, check=True).stdout
    installed = [s for s in status.split("\n\n") if "Status: install ok installed" in s]
    assert len(purls) == len(installed) == int(data["package_count"]) > 100
    version = next(line.split(": ", 1)[1] for s in installed if "Package: htcondor\n" in s + "\n"
                   for line in s.splitlines() if line.startswith("Version: "))
    assert any(p.startswith("pkg:deb/debian/htcondor@") and "arch=amd64" in p and "distro=debian-13" in p
               for p in purls), version


def _our_namespaces() -> set[str]:
    from condor_seed.local.netns import NAME_PREFIX
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {name for name in listed if name.startswith(NAME_PREFIX)}


def test_smoke_test_runs_a_real_pool(local_out, invoke):
    namespaces_before = _our_namespaces()
    proc = invoke("smoke-test", "--target", "local", "--out", str(local_out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for check in (
        "collector, negotiator and schedd answer",
        "login user got a private copy of the pool password: CONDOR-SEED-FIRST-BOOT: annex-users: admin can run",
        "no collector update timeouts in the seed's logs",
        "condor_annex -setup as admin with only the instance role: Setup successful.",
        "condor_annex -check-setup as admin: Your setup looks OK.",
        "the emulator saw the role's key and session token",
        "IAM actions condor_annex used the role for, all in iam/seed-instance-policy.json",
        "to cloudformation, ec2, ",
        "condor_annex explains an unreadable SEC_PASSWORD_FILE: Unable to open SEC_PASSWORD_FILE "
        "'/etc/condor/condor_pool_password': Permission denied",
        "condor_annex explains a wrong pool password: We were not authorized to advertise to the collector.",
        "IMDSv1 refused: console warning + login message with the fix",
        "annex workers joined", "job by unprivileged user alice ran on an annex worker",
        "worker with the wrong password refused",
    ):
        assert check in proc.stderr
    assert "condor_annex creates an annex: annex started: connectivity check passed from outside" in proc.stderr
    assert "to cloudformation, ec2, events, lambda, s3 signed with ASIA" in proc.stderr
    # the public IP (a free TEST-NET-3 address per run) and EC2's public name for it, from the metadata
    assert re.search(r"TCP_FORWARDING_HOST, COLLECTOR_HOST and region from the instance metadata: 203\.0\.113\.(\d+), "
                     r"ec2-203-0-113-\1\.us-west-2\.compute\.amazonaws\.com:9618, us-west-2", proc.stderr)
    assert _manifest(local_out)["custom_data"]["smoke_test"] == "passed"
    _nothing_left(local_out)
    assert _our_namespaces() <= namespaces_before, "the instance network namespace is removed"


def test_ctrl_c_during_smoke_test_leaves_nothing(local_out):
    """Interrupt while the pool runs: daemons stopped by pid, mounts undone, exit 130."""
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "smoke-test", "--target", "local", "--out", str(local_out)],
                            cwd=PROJECT_DIR, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        seen.append(line)
        if "from the instance metadata" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)  # workers are starting now
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    _nothing_left(local_out)
    assert _manifest(local_out)["custom_data"]["smoke_test"] == "failed"


def test_secret_left_by_the_bake_fails_the_build(tmp_path, monkeypatch):
    """A credential the bake leaves behind fails the build, naming the file; nothing is packed."""
    from condor_seed.errors import SeedError
    from condor_seed.local import build as local_build
    from condor_seed.recipe import load_recipe
    from condor_seed.render import render

    key = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # assembled so the repository holds no key

    def render_with_leak(recipe):
        tree = render(recipe)
        leak = (f'echo "export AWS_ACCESS_KEY_ID={key}" > /etc/profile.d/leak.sh\n'
                f'mkdir -p /usr/share/tool && printf "\\0\\0{key}\\0" > /usr/share/tool/data.bin\n'
                'console "$MARKER SUCCESS')
        script = tree.bake_script.content.replace('console "$MARKER SUCCESS', leak, 1)
        return type(tree)(tree.recipe, tree.image_files, type(tree.bake_script)("bake.sh", script, 0o755))

    monkeypatch.setattr(local_build, "render", render_with_leak)
    with pytest.raises(SeedError) as err:
        local_build.build_local(load_recipe("debian13-local"), out_dir=tmp_path)
    assert "secret scan failed" in str(err.value) and "/etc/profile.d/leak.sh: AWS Access Key" in str(err.value)
    assert "/usr/share/tool/data.bin: AWS Access Key" in str(err.value)  # binary, outside the text folders
    assert not list((tmp_path / "images").glob("*")) if (tmp_path / "images").exists() else True
    assert mounts_under(tmp_path) == [] and processes_in(tmp_path) == []


def test_sigkilled_run_is_cleaned_up_by_the_next(local_out):
    """SIGKILL leaves daemons running and trees mounted; the next run's reaper stops and unmounts them."""
    from condor_seed.local.workarea import reap_stale

    proc = subprocess.Popen([sys.executable, "-m", "invoke", "smoke-test", "--target", "local", "--out", str(local_out)],
                            cwd=PROJECT_DIR, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "collector, negotiator and schedd answer" in line:
            break
    proc.kill()
    proc.wait()
    work = local_out / "work"
    assert mounts_under(work), "the killed run left its mounts (the situation the reaper exists for)"
    assert any(processes_in(d / "rootfs") for d in work.iterdir() if d.is_dir())
    reaped = reap_stale(work)
    assert len(reaped) == 1
    _nothing_left(local_out)
    from condor_seed.local import netns
    stale = [name for name in netns.leftover_namespaces() if name.startswith(f"{netns.NAME_PREFIX}{proc.pid}-")]
    assert len(stale) == 1, "the killed run left its instance network (what the next run removes)"
    assert stale[0] in netns.remove_leftovers() and stale[0] not in netns.leftover_namespaces()
