"""The rendered boot script, run for real (bash + curl) against the IMDSv2 emulator on 127.0.0.1."""
from __future__ import annotations

import os
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


UNUSABLE_PUBLIC_IPS = {
    "999.999.999.999": "octet 999 is over 255",
    "203.0.113": "not a dotted-decimal IPv4 address",
    "127.0.0.2": "a loopback address",
    "169.254.169.254": "a link-local address",
    "10.1.2.3": "a private address (RFC 1918)",
    "172.31.0.5": "a private address (RFC 1918)",
    "192.168.0.7": "a private address (RFC 1918)",
    "100.64.0.1": "a carrier-grade NAT address",
    "0.0.0.0": "not a host address",
    "224.0.0.1": "a multicast or reserved address",
    "010.1.2.3": "not a dotted-decimal IPv4 address",  # a leading zero: octal to some parsers
    "<html>oops</html>": "not a dotted-decimal IPv4 address",
}


@pytest.mark.parametrize("answer", sorted(UNUSABLE_PUBLIC_IPS))
def test_unusable_public_ip_is_named_and_not_written(staged, answer):
    """A 200 reply that is no public IPv4 is reported as such (not as 'unreachable') and never configured."""
    tree, config_dir, runtime = staged
    with ImdsEmulator(public_ip=answer) as imds:
        proc = run_boot_script(tree, runtime, imds.url, attempts=3)
        lookups = [r for r in imds.requests if r == ("GET", "/latest/meta-data/public-ipv4")]
    assert proc.returncode == 0, "HTCondor must still start"
    problem = UNUSABLE_PUBLIC_IPS[answer]
    assert f"CONDOR-SEED-BOOT: public-ipv4 '{answer}' is {problem}\n" in proc.stdout
    assert "unreachable" not in proc.stdout and len(lookups) == 1, "an answer is not retried"
    assert _tcp_forwarding_host(config_dir)["TCP_FORWARDING_HOST"] is None
    assert "EC2PublicIP" not in runtime.read_text() and "<html>" not in runtime.read_text()


def _settings(config_dir):
    return effective_params(config_dir, ["TCP_FORWARDING_HOST", "COLLECTOR_HOST", "ANNEX_DEFAULT_AWS_REGION"])


def test_collector_host_is_the_public_hostname_and_region_from_metadata(staged):
    tree, config_dir, runtime = staged
    with ImdsEmulator(public_ip="198.51.100.23", public_hostname="ec2-198-51-100-23.eu-west-3.compute.example",
                      region="eu-west-3", imdsv1=True) as imds:
        proc = run_boot_script(tree, runtime, imds.url)
    assert proc.returncode == 0, proc.stderr
    assert _settings(config_dir) == {"TCP_FORWARDING_HOST": "198.51.100.23",
                                     "COLLECTOR_HOST": "ec2-198-51-100-23.eu-west-3.compute.example:9618",
                                     "ANNEX_DEFAULT_AWS_REGION": "eu-west-3"}


def test_collector_host_falls_back_to_public_ip_then_private_name(staged):
    tree, config_dir, runtime = staged
    with ImdsEmulator(public_ip="198.51.100.23", region="eu-west-3", imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    assert _settings(config_dir)["COLLECTOR_HOST"] == "198.51.100.23:9618"
    with ImdsEmulator(public_ip=None, public_hostname="ignored-without-a-public-ip.example", imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    settings = _settings(config_dir)
    assert "COLLECTOR_HOST" not in runtime.read_text(), "the image's own $(CONDOR_HOST):9618 (private name) stays"
    assert "ignored" not in settings["COLLECTOR_HOST"] and settings["TCP_FORWARDING_HOST"] is None
    assert settings["ANNEX_DEFAULT_AWS_REGION"] == "us-east-1", "HTCondor's own default when metadata has none"


def test_bad_region_or_hostname_never_reaches_the_config(staged):
    tree, config_dir, runtime = staged
    with ImdsEmulator(public_ip="198.51.100.23", public_hostname="evil host\nALLOW_WRITE = *",
                      region="us-east-1\nALLOW_WRITE = *", imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    assert "ALLOW_WRITE" not in runtime.read_text()
    assert _settings(config_dir)["COLLECTOR_HOST"] == "198.51.100.23:9618"


def test_imdsv1_refused_warns_on_console_and_at_login(staged):
    """HttpTokens=required: the seed says condor_annex cannot use the role, and how to fix it."""
    tree, _, runtime = staged
    motd = runtime.with_name("motd")
    with ImdsEmulator(public_ip="198.51.100.23", region="eu-west-3", imdsv1=False) as imds:
        proc = run_boot_script(tree, runtime, imds.url, motd_file=motd)
    fix = ("aws ec2 modify-instance-metadata-options --region eu-west-3 --instance-id i-0123456789abcdef0 "
           "--http-tokens optional")
    assert proc.returncode == 0
    assert "CONDOR-SEED-BOOT: WARNING imds-v1-refused" in proc.stdout and fix in proc.stdout
    assert fix in motd.read_text() and oct(motd.stat().st_mode & 0o777) == "0o644"
    # once the instance allows IMDSv1 again, the next boot removes the login message
    with ImdsEmulator(public_ip="198.51.100.23", region="eu-west-3", imdsv1=True) as imds:
        proc = run_boot_script(tree, runtime, imds.url, motd_file=motd)
    assert "WARNING" not in proc.stdout and not motd.exists()


def test_imds_emulator_v1_switch():
    import urllib.error
    import urllib.request
    with ImdsEmulator(imdsv1=True) as imds:
        assert urllib.request.urlopen(f"{imds.url}/latest/meta-data/instance-id", timeout=5).read() == \
            b"i-0123456789abcdef0"
        assert imds.requests == [("GET-v1", "/latest/meta-data/instance-id")]


def test_private_network_named_when_the_public_ip_is_nat(staged):
    """Public IP on no interface: the VPC id names the private network and local-ipv4 is its address,
    so the collector recognises COLLECTOR_HOST (resolving to the private IP) as itself."""
    tree, config_dir, runtime = staged
    knobs = ["PRIVATE_NETWORK_NAME", "PRIVATE_NETWORK_INTERFACE"]
    with ImdsEmulator(public_ip="198.51.100.23", local_ipv4="172.31.5.9", vpc_id="vpc-0a1b2c3d4e5f67890",
                      imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    assert effective_params(config_dir, knobs) == {"PRIVATE_NETWORK_NAME": "vpc-0a1b2c3d4e5f67890",
                                                   "PRIVATE_NETWORK_INTERFACE": "172.31.5.9"}
    with ImdsEmulator(public_ip="198.51.100.23", local_ipv4="172.31.5.9", vpc_id=None, imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    assert effective_params(config_dir, knobs)["PRIVATE_NETWORK_NAME"] == "i-0123456789abcdef0", "instance id"
    with ImdsEmulator(public_ip=None, local_ipv4="172.31.5.9", imdsv1=True) as imds:
        run_boot_script(tree, runtime, imds.url)
    assert "PRIVATE_NETWORK" not in runtime.read_text(), "no NAT, nothing to name"
    assert effective_params(config_dir, knobs)["PRIVATE_NETWORK_INTERFACE"] is None


def test_reconfig_only_when_a_setting_changed(staged, tmp_path, monkeypatch):
    """Rerun on a running seed (e.g. after an Elastic IP change): condor_reconfig only if the file's
    settings changed. Stand-ins for a running condor_master (pidof) and condor_reconfig record calls."""
    tree, _, runtime = staged
    bin_dir, calls = tmp_path / "bin", tmp_path / "reconfig-calls"
    bin_dir.mkdir()
    (bin_dir / "pidof").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "condor_reconfig").write_text(f"#!/bin/sh\necho reconfig >> {calls}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def boot(public_ip):
        with ImdsEmulator(public_ip=public_ip, imdsv1=True) as imds:
            return run_boot_script(tree, runtime, imds.url).stdout

    assert "condor_reconfig done" in boot("198.51.100.23")
    assert "condor_reconfig" not in boot("198.51.100.23"), "same settings: HTCondor is left alone"
    assert "condor_reconfig done" in boot("198.51.100.99")
    assert calls.read_text().split() == ["reconfig", "reconfig"]
