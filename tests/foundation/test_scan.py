"""The secret scan finds each kind of thing that must not ship, names the file, and passes a clean tree."""
from __future__ import annotations

import pytest

from condor_seed.scan import scan_tree

# Assembled at run time so this repository never holds a detectable key itself.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
PRIVATE_KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"

PLANTED = {
    "root/.aws/credentials": (f"[default]\naws_access_key_id = {AWS_KEY}\naws_secret_access_key = {AWS_SECRET}\n",
                              "AWS credentials"),
    "home/alice/.ssh/authorized_keys": ("ssh-ed25519 AAAAC3Nza alice\n", "SSH authorized_keys"),
    "etc/ssh/ssh_host_ed25519_key": (PRIVATE_KEY, "SSH host key"),
    "etc/condor/condor_pool_password": ("scrambled", "HTCondor pool password"),
    "etc/condor/passwords.d/POOL": ("scrambled", "token signing key"),
    "etc/condor/tokens.d/seed": ("eyJhbGciOiJIUzI1NiJ9.e30.x", "IDTOKEN"),
    "root/.condor/privateKeyFile": ("secret", "condor_annex AWS key file"),
    "var/lib/cloud/instances/i-0abc/user-data.txt": ("#!/bin/bash\n", "cloud-init instance state"),
    "etc/profile.d/leak.sh": (f"export AWS_ACCESS_KEY_ID={AWS_KEY}\n", "AWS Access Key"),
    "opt/app/key.pem": (PRIVATE_KEY, "Private Key"),
}


@pytest.mark.parametrize("rel", sorted(PLANTED))
def test_each_planted_secret_is_found(tmp_path, rel):
    content, reason = PLANTED[rel]
    (tmp_path / "etc/condor").mkdir(parents=True)
    (tmp_path / "etc/condor/condor_config").write_text("RELEASE_DIR = /usr\n")
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    findings = scan_tree(tmp_path)
    # a file, or the forbidden folder holding it, is named
    assert any(("/" + rel).startswith(f.path) and reason in f.reason for f in findings), findings


def test_clean_tree_passes(tmp_path):
    (tmp_path / "etc/condor/config.d").mkdir(parents=True)
    (tmp_path / "etc/condor/config.d/30-seed.config").write_text("SEC_PASSWORD_FILE = /etc/condor/condor_pool_password\n")
    (tmp_path / "etc/ssl/certs").mkdir(parents=True)
    (tmp_path / "etc/ssl/certs/ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "etc/ssh").mkdir()
    (tmp_path / "etc/ssh/sshd_config").write_text("PasswordAuthentication no\n")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/tool").write_bytes(b"\x7fELF\0" + AWS_KEY.encode())  # package payload is not scanned
    assert scan_tree(tmp_path) == []


def test_symlink_out_of_the_tree_is_not_followed(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root/.aws").symlink_to("/nonexistent-host-dir")
    findings = scan_tree(tmp_path)
    assert [f.path for f in findings] == ["/root/.aws"]  # the link itself is reported, the host is not read
