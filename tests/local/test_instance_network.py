"""The local smoke test's instance network and emulated cloud on their own (no image needed): what a
process inside the namespace sees is what it would see on an EC2 instance."""
from __future__ import annotations

import json
import subprocess

import pytest

from condor_seed.local import netns
from condor_seed.local.cloud import EmulatedCloud

pytestmark = pytest.mark.root


def _inside(net, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*net.prefix, *cmd], capture_output=True, text=True, timeout=30, **kwargs)


def test_instance_network_looks_like_ec2_and_is_removed(tmp_path):
    with netns.instance_network() as net, EmulatedCloud(net) as cloud:
        addresses = _inside(net, "ip", "-o", "-4", "addr").stdout
        assert f"inet {net.private_ip}/24" in addresses
        assert net.public_ip not in addresses and netns.METADATA_IP not in addresses, "on no interface"
        # IMDSv1 (what condor_annex's GAHP does): the role, then its temporary credentials
        base = f"http://{netns.METADATA_IP}/latest/meta-data/iam/security-credentials/"
        role = _inside(net, "curl", "-fsS", base).stdout
        credentials = json.loads(_inside(net, "curl", "-fsS", base + role).stdout)
        assert (role, credentials["AccessKeyId"], credentials["Token"]) == \
            (cloud.role.role, cloud.role.access_key_id, cloud.role.token)
        cloud.imds.imdsv1 = False  # HttpTokens=required
        assert _inside(net, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", base).stdout == "401"
        # AWS under its regional names, over TLS trusted only through the throw-away CA
        ca = tmp_path / "ca.pem"
        ca.write_text(cloud.ca_pem)
        ec2 = cloud.host("ec2")
        answer = _inside(net, "curl", "-sS", "--cacert", str(ca), "--resolve", f"{ec2}:443:{net.host_ip}",
                         f"https://{ec2}/?Action=DescribeRegions&Version=2016-11-15",
                         "-H", f"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/{cloud.region}/ec2/"
                               "aws4_request, SignedHeaders=host, Signature=0")
        assert "DescribeRegionsResponse" in answer.stdout, answer.stderr
        assert [(r.access_key_id, r.action) for r in cloud.requests][-1] == ("AKIDEXAMPLE", "ec2:DescribeRegions")
        # HTCondor's setup templates are where CloudFormation looks for them
        assert cloud.client("s3", "us-east-1").head_object(Bucket="condor-annex", Key="bucket-11.json")
        name = net.name
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
