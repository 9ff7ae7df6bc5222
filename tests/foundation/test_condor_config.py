"""Each template's effective HTCondor values, read by HTCondor's own parser (htcondor2 bindings)."""
from __future__ import annotations

import pytest

from condor_seed.condor_params import effective_params
from condor_seed.recipe import available_recipes, load_recipe
from condor_seed.render import render
from condor_seed.validate import EMULATED_PUBLIC_IP, QUERIED, Report, base_security, check_authorization, \
    check_condor_config, check_security_knobs, staged_config_dir, validate


@pytest.mark.parametrize("name", available_recipes())
def test_every_recipe_validates(name):
    report = validate(load_recipe(name))
    assert report.ok, report.failures()
    assert len(report.checks) >= 24


def _values(tmp_path, name, runtime=f"TCP_FORWARDING_HOST = {EMULATED_PUBLIC_IP}\n"):
    recipe = load_recipe(name)
    config_dir = staged_config_dir(render(recipe), tmp_path)
    if runtime is not None:
        (tmp_path / "rootfs/etc/condor/condor-seed-runtime.config").write_text(runtime)
    return recipe, effective_params(config_dir, QUERIED + ["SCHEDD_HOST", "SEC_DEFAULT_AUTHENTICATION_METHODS"],
                                    extra=base_security(recipe))


def test_condor_annex_generation_values(tmp_path):
    recipe, v = _values(tmp_path, "rhel9-x86_64")
    assert v["DAEMON_LIST"].split() == ["MASTER", "COLLECTOR", "NEGOTIATOR", "SCHEDD"]
    assert v["SEC_DAEMON_AUTHENTICATION_METHODS"] == "IDTOKENS, PASSWORD"
    assert v["SEC_PASSWORD_FILE"] == "/etc/condor/condor_pool_password"
    assert v["ALLOW_DAEMON"].split()[:2] == ["condor_pool@*", "condor@password"]
    assert v["NETWORK_INTERFACE"] == "*" and v["COLLECTOR_HOST"].endswith(":9618")
    assert v["TCP_FORWARDING_HOST"] == EMULATED_PUBLIC_IP
    assert v["ANNEX_COLLECTOR"] is None, "no HPC_ANNEX before 24.11"


def test_htcondor_annex_generation_adds_ap_collector(tmp_path):
    _, v = _values(tmp_path, "rhel9-x86_64-htcondor25")
    assert "AP_COLLECTOR" in v["DAEMON_LIST"].split()
    assert v["ANNEX_COLLECTOR"].endswith("?sock=ap_collector")


def test_htcondor_annex_generation_offers_fs_to_local_users_at_daemon_level(tmp_path):
    """`htcondor annex create` runs condor_token_fetch as the login user, a DAEMON-level command:
    FS must be offered there (issue 11); never for the negotiator, never FS_REMOTE/CLAIMTOBE/ANONYMOUS."""
    _, v = _values(tmp_path / "25", "rhel9-x86_64-htcondor25")
    assert v["SEC_DAEMON_AUTHENTICATION_METHODS"] == "FS, IDTOKENS, PASSWORD"
    assert v["SEC_NEGOTIATOR_AUTHENTICATION_METHODS"] == "IDTOKENS, PASSWORD"
    _, v24 = _values(tmp_path / "24", "rhel9-x86_64")
    assert "FS" not in v24["SEC_DAEMON_AUTHENTICATION_METHODS"], "gen-1 seeds are unchanged"


def test_checks_catch_a_remote_method_at_daemon_level(tmp_path):
    recipe = load_recipe("rhel9-x86_64-htcondor25")
    config_dir = staged_config_dir(render(recipe), tmp_path)
    (tmp_path / "rootfs/etc/condor/condor-seed-runtime.config").write_text(f"TCP_FORWARDING_HOST = {EMULATED_PUBLIC_IP}\n")
    (config_dir / "50-weaker.config").write_text("SEC_DAEMON_AUTHENTICATION_METHODS = FS, FS_REMOTE, IDTOKENS, PASSWORD\n")
    report = Report(recipe.name)
    check_condor_config(recipe, effective_params(config_dir, QUERIED, extra=base_security(recipe)), report,
                        EMULATED_PUBLIC_IP)
    failed = {name for name, ok, _ in report.checks if not ok}
    assert failed == {"SEC_DAEMON_AUTHENTICATION_METHODS = FS, IDTOKENS, PASSWORD",
                      "SEC_DAEMON_AUTHENTICATION_METHODS proves no remote client without a secret"}


@pytest.mark.parametrize("local, ec2", [("debian-sid-local", "rhel9-x86_64-htcondor25"),
                                        ("debian13-local", "rhel9-x86_64")])
def test_local_recipe_configures_what_its_ec2_recipe_does(local, ec2):
    """One place decides what a seed configures (the HTCondor version): the local recipe that proves
    an EC2 recipe on real daemons renders the same files (it boots in an EC2-like network namespace),
    apart from the script naming the OS's login user (admin on Debian, ec2-user on RHEL)."""
    local_files = {f.path: f.content for f in render(load_recipe(local)).image_files}
    ec2_files = {f.path: f.content for f in render(load_recipe(ec2)).image_files}
    assert local_files.keys() == ec2_files.keys()
    differ = {path for path in local_files if local_files[path] != ec2_files[path]}
    assert differ == {"/usr/libexec/condor-seed/condor-seed-annex-users"}


def test_local_recipe_networks_like_ec2(tmp_path):
    """The local seed boots in a network namespace laid out like an instance's: same settings as EC2."""
    _, local = _values(tmp_path / "local", "debian13-local")
    _, ec2 = _values(tmp_path / "ec2", "rhel9-x86_64")
    assert local["NETWORK_INTERFACE"] == ec2["NETWORK_INTERFACE"] == "*"
    assert local["COLLECTOR_HOST"] == ec2["COLLECTOR_HOST"]


def test_missing_boot_file_leaves_tcp_forwarding_host_unset(tmp_path):
    _, v = _values(tmp_path, "rhel9-x86_64", runtime=None)
    assert v["TCP_FORWARDING_HOST"] is None, "include ifexist: an absent boot file is not an error"


def test_checks_catch_a_weakened_config(tmp_path):
    """The checks can fail: weaken one knob in the rendered tree and the report says so."""
    recipe = load_recipe("rhel9-x86_64")
    config_dir = staged_config_dir(render(recipe), tmp_path)
    (config_dir / "50-weaker.config").write_text("SEC_DAEMON_INTEGRITY = OPTIONAL\nuse ROLE : Execute\n")
    values = effective_params(config_dir, QUERIED, extra=base_security(recipe))
    report = Report(recipe.name)
    check_condor_config(recipe, values, report, EMULATED_PUBLIC_IP)
    failed = {name for name, ok, _ in report.checks if not ok}
    assert failed == {"SEC_DAEMON_INTEGRITY = REQUIRED", "seed runs no STARTD", "TCP_FORWARDING_HOST from the boot file"}


@pytest.mark.parametrize("weaker, failed", [
    ("ALLOW_READ = *\nSEC_READ_AUTHENTICATION = OPTIONAL\n",
     {"READ needs authentication", "ALLOW_READ refuses unauthenticated@unmapped", "ALLOW_READ refuses anonymous@ssl",
      "ALLOW_READ refuses ssl@unmapped"}),
    ("ALLOW_WRITE = */127.0.0.1 $(ALLOW_WRITE)\n",  # a host entry admits every user from there
     {"ALLOW_WRITE refuses unauthenticated@unmapped", "ALLOW_WRITE refuses anonymous@ssl",
      "ALLOW_WRITE refuses ssl@unmapped"}),
    ("ALLOW_ADMINISTRATOR = condor@* root@*\nALLOW_NEGOTIATOR = condor_pool@*\n",
     {"ALLOW_ADMINISTRATOR refuses the pool identity", "ALLOW_NEGOTIATOR refuses the pool identity"}),
    ("SEC_DEFAULT_AUTHENTICATION_METHODS = FS, SSL, CLAIMTOBE\n",
     {f"{level} methods a stranger cannot use" for level in ("READ", "WRITE", "ADMINISTRATOR")}),
    ("ALLOW_READ = condor@password\n", {"ALLOW_READ admits local users and the pool identity"}),
])
def test_authorization_checks_catch_a_weakened_seed(tmp_path, weaker, failed):
    """`invoke validate` reads the seed's authorization with HTCondor's parser and fails when it opens up."""
    recipe = load_recipe("rhel9-x86_64-htcondor25")
    config_dir = staged_config_dir(render(recipe), tmp_path)
    values = effective_params(config_dir, QUERIED, extra=base_security(recipe))
    report = Report(recipe.name)
    check_authorization(values, report)
    assert report.ok, report.failures()
    (config_dir / "50-weaker.config").write_text(weaker)
    values = effective_params(config_dir, QUERIED, extra=base_security(recipe))
    report = Report(recipe.name)
    check_authorization(values, report)
    assert {name for name, ok, _ in report.checks if not ok} == failed


@pytest.mark.parametrize("stray", [
    "ALLOW_CONFIG = *",                        # like the ALLOW_ADMINISTRATOR a newline in a recipe injected
    "SEC_DEFAULT_AUTHENTICATION = OPTIONAL",
    "use SECURITY : host_based",               # a whole metaknob of weaker settings
    "DENY_WRITE = $(DENY_WRITE) nobody@*",
])
def test_validate_catches_an_unexpected_security_knob(tmp_path, stray):
    """Every ALLOW_/DENY_/SEC_ value is compared with base security alone: a knob nobody meant to set fails."""
    recipe = load_recipe("rhel9-x86_64")
    config_dir = staged_config_dir(render(recipe), tmp_path)
    clean = Report(recipe.name)
    check_security_knobs(recipe, config_dir, clean)
    assert clean.ok, clean.failures()
    (config_dir / "10-seed-network.config").write_text(
        (config_dir / "10-seed-network.config").read_text() + stray + "\n")
    report = Report(recipe.name)
    check_security_knobs(recipe, config_dir, report)
    assert not report.ok
    [line] = report.failures()
    assert line.startswith("rhel9-x86_64: no unexpected ALLOW/DENY/SEC knob: ")
    assert stray.split()[0] in line or "host_based" in stray


def test_rendered_tree_records_modes_and_owners(tmp_path):
    tree = render(load_recipe("rhel9-x86_64"))
    tree.write(tmp_path)
    import json
    listing = json.loads((tmp_path / "files.json").read_text())
    modes = {f["path"]: f["mode"] for f in listing["files"]}
    assert modes["/usr/libexec/condor-seed/condor-seed-public-ip"] == "0755"
    assert modes["/etc/condor/config.d/30-seed-annex-security.config"] == "0644"
    assert all(f["owner"] == "root" for f in listing["files"])
    assert (tmp_path / "bake.sh").stat().st_mode & 0o777 == 0o755
    # the bake script carries every image file, verbatim
    for f in tree.image_files:
        assert f"install -D -m {f.mode_octal} -o root -g root /dev/stdin {f.path} <<" in tree.bake_script.content
        assert f.content in tree.bake_script.content


def test_no_secret_is_rendered(tmp_path):
    from condor_seed.scan import scan_tree

    for name in available_recipes():
        tree = render(load_recipe(name))
        text = "\n".join(f.content for f in tree.image_files) + tree.bake_script.content
        assert "aws_secret_access_key" not in text.lower()
        tree.write(tmp_path / name)  # the bake script's own patterns must not match the script itself
    assert scan_tree(tmp_path) == []
