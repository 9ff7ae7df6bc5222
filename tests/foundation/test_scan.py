"""The secret scan finds each kind of thing that must not ship, names the file, and passes a clean tree.
The local scan and the bake script's own check (every target) come from one list and one function."""
from __future__ import annotations

import subprocess

import pytest

from condor_seed.leak_rules import FORBIDDEN_PATHS, shell_functions
from condor_seed.recipe import available_recipes, load_recipe
from condor_seed.render import render
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
    "var/spool/cron/root": (f"0 * * * * AWS_ACCESS_KEY_ID={AWS_KEY} sync\n", "AWS Access Key"),
    "usr/share/tool/config.ini": (f"[aws]\nkey={AWS_KEY}\n", "AWS Access Key"),
    "etc/condor/hostkey.pem": (PRIVATE_KEY, "HTCondor host key"),
    "var/lib/systemd/random-seed": ("\x13\x37", "systemd random seed"),
    "home/bob/.ssh/id_dsa": ("x", "SSH private key"),
    "home/bob/.condor/tokens.d/annex": ("eyJhbGciOiJIUzI1NiJ9.e30.x", "IDTOKEN"),
    "var/lib/cloud/data/instance-id": ("i-0abc", "cloud-init instance state"),
    "home/bob/.zsh_history": ("aws configure\n", "shell history"),
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
    # programs that hold a private key header (ssh) or a library's self-test key (libgnutls), and
    # letters that merely look like a key id inside a longer run (libunistring's Unicode names)
    (tmp_path / "usr/bin/ssh").write_bytes(b"\x7fELF\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0")
    (tmp_path / "usr/bin/gnutls").write_bytes(b"\x7fELF\0" + PRIVATE_KEY.encode())
    (tmp_path / "usr/bin/names").write_bytes(b"\x7fELF\0ARABICAKIAISLANDISSHARITALLETTER\0")
    assert scan_tree(tmp_path) == []


@pytest.mark.parametrize("where", ["big", "binary"])
def test_keys_in_large_and_binary_files_are_found(tmp_path, where):
    path = tmp_path / "usr/lib/blob"
    path.parent.mkdir(parents=True)
    head = b"\0" * 10 if where == "binary" else b"x" * (3 << 20)
    path.write_bytes(head + f"\n{AWS_KEY}\n".encode() + b"y" * 100)
    assert [(f.path, f.reason) for f in scan_tree(tmp_path)] == [("/usr/lib/blob", "AWS Access Key")]


def _example(glob: str) -> str:
    return glob.replace("**/", "home/bob/").replace("*", "x")


def _bake_check(root, script: str) -> list[str]:
    run = subprocess.run(["bash", "-c", script + '\nseed_leftovers "$1"', "check", str(root)],
                         capture_output=True, text=True, check=True)
    return sorted(line.replace(str(root), "") for line in run.stdout.splitlines())


@pytest.mark.parametrize("recipe", available_recipes())
def test_every_bake_script_carries_the_same_check_scan_py_runs(recipe):
    assert shell_functions() in render(load_recipe(recipe)).bake_script.content


def test_local_scan_and_bake_check_agree_on_every_forbidden_path_and_pattern(tmp_path):
    for glob, _ in FORBIDDEN_PATHS:
        path = tmp_path / _example(glob)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    for rel in ("opt/app/key.pem", "var/spool/cron/root", "usr/share/tool/config.ini"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PLANTED[rel][0])
    local = sorted({f.path for f in scan_tree(tmp_path)})
    bake = _bake_check(tmp_path, shell_functions())  # what every bake script carries (test above)
    assert sorted({line.rpartition(": ")[0] for line in bake}) == local
    assert len(local) == len(FORBIDDEN_PATHS) + 3


def test_symlink_out_of_the_tree_is_not_followed(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root/.aws").symlink_to("/nonexistent-host-dir")
    findings = scan_tree(tmp_path)
    assert [f.path for f in findings] == ["/root/.aws"]  # the link itself is reported, the host is not read
