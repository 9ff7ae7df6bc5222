"""The rendered boot script, run for real (bash + curl) against the IMDSv2 emulator on 127.0.0.1."""
from __future__ import annotations

import socket

import pytest

from condor_seed.condor_params import effective_params
from condor_seed.imds import ImdsEmulator
from condor_seed.recipe import load_recipe
from condor_seed.render import render
from condor_seed.validate import run_boot_script, staged_config_dir


@pytest.fixture
def staged(tmp_path):
    tree = render(load_recipe("rhel9-x86_64"))
    config_dir = staged_config_dir(tree, tmp_path)
    return tree, config_dir, tmp_path / "rootfs/etc/condor/condor-seed-runtime.config"


def _tcp_forwarding_host(config_dir):
    return effective_params(config_dir, ["TCP_FORWARDING_HOST", "EC2PublicIP"])


def test_public_ip_present(staged):
    tree, config_dir, runtime = staged
    with ImdsEmulator(public_ip="198.51.100.23") as imds:
        proc = run_boot_script(tree, runtime, imds.url)
        requests = imds.requests
    assert proc.returncode == 0, proc.stderr
    assert "CONDOR-SEED-BOOT: public-ip=198.51.100.23" in proc.stdout
    # IMDSv2: a token PUT first, then the lookup with that token
    assert requests[0] == ("PUT", "/latest/api/token")
    assert ("GET", "/latest/meta-data/public-ipv4") in requests
    assert _tcp_forwarding_host(config_dir) == {"TCP_FORWARDING_HOST": "198.51.100.23", "EC2PublicIP": "198.51.100.23"}
    assert oct(runtime.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in runtime.parent.iterdir() if p.name.startswith(runtime.name + ".")] == [], "no temp left"


def test_token_is_required():
    """The emulator is strict like IMDSv2-only instances: a token-less (IMDSv1) GET is refused."""
    import urllib.error
    import urllib.request
    with ImdsEmulator() as imds:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{imds.url}/latest/meta-data/public-ipv4", timeout=5)
    assert err.value.code == 401


def test_no_public_ip_falls_back_and_removes_a_stale_address(staged):
    tree, config_dir, runtime = staged
    runtime.write_text("TCP_FORWARDING_HOST = 192.0.2.99\n")  # from a previous boot with another address
    with ImdsEmulator(public_ip=None) as imds:
        proc = run_boot_script(tree, runtime, imds.url)
    assert proc.returncode == 0, proc.stderr
    assert "no-public-ip (instance has no public IPv4)" in proc.stdout
    assert "TCP_FORWARDING_HOST stays unset" in runtime.read_text()
    assert _tcp_forwarding_host(config_dir)["TCP_FORWARDING_HOST"] is None


def test_endpoint_down_is_bounded_and_falls_back(staged):
    tree, config_dir, runtime = staged
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_boot_script(tree, runtime, f"http://127.0.0.1:{port}", attempts=2, timeout=1)
    assert proc.returncode == 0, "HTCondor must still start without metadata"
    assert "metadata service unreachable after 2 attempts" in proc.stdout
    assert _tcp_forwarding_host(config_dir)["TCP_FORWARDING_HOST"] is None


def test_garbage_answer_is_not_written(staged):
    """Something answering that is not an IPv4 address never lands in the config."""
    tree, _, runtime = staged
    with ImdsEmulator(public_ip="not-an-ip; rm -rf /") as imds:
        proc = run_boot_script(tree, runtime, imds.url, attempts=1)
    assert "rm -rf" not in runtime.read_text()
    assert "TCP_FORWARDING_HOST stays unset" in runtime.read_text()
    assert proc.returncode == 0
