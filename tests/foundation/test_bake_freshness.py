"""The bake applies every update before the seed's files, and trusts third-party repositories by
pinned key fingerprint, not by URL.

The RHEL branch cannot run here (no RHEL guest, no rpm database): its key check runs for real with
bash, curl (file:// URLs) and gpg against keys made for the test; `rpm` is a stand-in that records
what it was asked to import. The rest is checked on the rendered script (shellcheck runs in
test_condor_config via `invoke validate`).
"""
import re
import subprocess
from pathlib import Path

import pytest

from condor_seed.recipe import available_recipes, load_recipe
from condor_seed.render import render


def bake(name: str) -> str:
    return render(load_recipe(name)).bake_script.content


def order(script: str, *needles: str) -> list[int]:
    return [script.index(n) for n in needles]


@pytest.mark.parametrize("name", ["rhel9-x86_64", "rhel8-x86_64", "rhel9-x86_64-htcondor25"])
def test_rhel_bake_verifies_keys_then_release_rpms_then_upgrades_before_the_seed(name):
    script = bake(name)
    recipe = load_recipe(name)
    epel_fpr = recipe.data["signing_keys"]["epel"][recipe.os_version]
    steps = order(script, f'RPM-GPG-KEY-EPEL-{recipe.os_version}" "$keys/epel.key" {epel_fpr}',
                  'verified_rpm "https://dl.fedoraproject.org/pub/epel/epel-release-latest',
                  'dnf -y -q install "$keys/epel-release.rpm"',
                  f'keys/HTCondor-{recipe.htcondor_channel}-Key',
                  'verified_rpm https://htcss', 'dnf -y -q install "$keys/htcondor-release.rpm"',  # a quoted shell word
                  "dnf -y -q upgrade --refresh", "dnf -y -q install condor", 'step "lay down the seed')
    assert steps == sorted(steps)
    # no release RPM is installed straight from a URL any more
    assert not re.search(r"dnf [^\n]*install [^\n]*\"https://", script)
    assert "gpgcheck=1" in script and "gpgkey=file://$condor_key" in script


def test_debian_bake_upgrades_before_installing_and_laying_down_files():
    script = bake("debian13-local")
    steps = order(script, "apt-get -q update", "apt-get -q -y upgrade", "install --no-install-recommends htcondor",
                  'step "lay down the seed')
    assert steps == sorted(steps)


def test_package_report_comes_after_the_scan_and_before_success():
    for name in ("rhel9-x86_64", "debian13-local"):
        script = bake(name)
        assert order(script, 'step "scan for anything', "\nreport_packages\n", "SUCCESS recipe=") == sorted(
            order(script, 'step "scan for anything', "\nreport_packages\n", "SUCCESS recipe="))


def test_every_epel_version_a_recipe_can_name_has_a_pinned_key():
    keys = load_recipe("rhel9-x86_64").data["signing_keys"]["epel"]
    assert set(keys) >= {"8", "9", "10"} and all(re.fullmatch(r"[0-9A-F]{40}", v) for v in keys.values())


# Debian recipes install Debian's own packages, which apt checks with the archive keyring.
RHEL_RECIPES = [name for name in available_recipes() if load_recipe(name).os_family == "rhel"]


def test_there_are_rhel_recipes_to_check():
    assert len(RHEL_RECIPES) >= 4, RHEL_RECIPES


@pytest.mark.parametrize("name", RHEL_RECIPES)
def test_every_rhel_recipe_pins_its_htcondor_series_and_the_bake_checks_it(name):
    recipe = load_recipe(name)
    pins = recipe.data["signing_keys"]["htcondor"].get(recipe.htcondor_channel)
    assert pins and all(re.fullmatch(r"[0-9A-F]{40}", fpr) for fpr in pins), f"{name}: {recipe.htcondor_channel}: {pins}"
    key_url = f"{recipe.htcondor_repo_base}/keys/HTCondor-{recipe.htcondor_channel}-Key"
    assert f'import_key {key_url} "$keys/htcondor.key" {" ".join(pins)}\n' in bake(name)


def test_the_shipped_series_keys_are_htcondors_published_ones():
    """The OSG developer keys HTCondor signs 24.* and 25.* with (sources: recipes/defaults.yaml)."""
    pins = load_recipe("rhel9-x86_64").data["signing_keys"]["htcondor"]
    assert pins["24.0"] == ["F77FE0C70A9BAA739FD352C99DF75B52EFFC3BE6"]
    assert pins["25.0"] == ["962A9BCDD330245F2703C88B74E5BE22D4E9B1FC"]
    # HTCondor's signing script names them by their last 16 hex digits
    assert pins["24.0"][0].endswith("9DF75B52EFFC3BE6") and pins["25.0"][0].endswith("74E5BE22D4E9B1FC")


# ---------------------------------------------------------------- the key check, for real
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two real OpenPGP keys (ed25519) made with gpg: returns {name: (armored file, fingerprint)}."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    made = {}
    for name in ("good", "evil"):
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key",
                        f"{name} <{name}@example.org>", "ed25519", "sign", "never"], check=True, capture_output=True)
        listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys", f"{name}@example.org"],
                                 check=True, capture_output=True, text=True).stdout
        fpr = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.M).group(1)
        armored = home / f"{name}.asc"
        armored.write_text(subprocess.run(["gpg", "--homedir", str(home), "--armor", "--export", fpr],
                                          check=True, capture_output=True, text=True).stdout)
        made[name] = (armored, fpr)
    yield made
    # gpg started an agent for this home; a later run reusing the path (--basetemp) would find its dying socket
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True)


def run_key_functions(tmp_path: Path, call: str, rpm_k_output: str = "") -> subprocess.CompletedProcess:
    script = bake("rhel9-x86_64")
    functions = script[script.index("fetch() {"):script.index('import_key "https://dl.fedoraproject')]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "rpm.log"
    (bin_dir / "rpm").write_text(f"#!/bin/bash\necho \"$*\" >> {log}\n"
                                 f"if [ \"$1\" = -K ]; then printf '%s\\n' \"{rpm_k_output}\"; fi\n")
    (bin_dir / "rpm").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    text = (f"set -Eeuo pipefail\nMARKER=CONDOR-SEED-BAKE:\nconsole() {{ echo \"$*\"; }}\n"
            f"export GNUPGHOME={home}\n{functions}\n{call}\necho DONE\n")
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C"})


def test_a_key_with_the_pinned_fingerprint_is_imported(tmp_path, keys):
    armored, fpr = keys["good"]
    proc = run_key_functions(tmp_path, f'import_key "file://{armored}" {tmp_path}/k.asc OTHERFPR {fpr}')
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr
    assert (tmp_path / "rpm.log").read_text() == f"--import {tmp_path}/k.asc.pinned\n"
    assert _fingerprints(tmp_path / "k.asc.pinned") == [fpr]


def test_a_key_with_another_fingerprint_is_refused_and_never_imported(tmp_path, keys):
    armored, evil = keys["evil"]
    proc = run_key_functions(tmp_path, f'import_key "file://{armored}" {tmp_path}/k.asc {keys["good"][1]}')
    assert proc.returncode == 1 and "DONE" not in proc.stdout
    assert f"FAILED recipe=rhel9-x86_64 key file://{armored} has fingerprint {evil}" in proc.stdout
    assert not (tmp_path / "rpm.log").exists()


def test_of_a_file_holding_a_pinned_and_an_unpinned_key_only_the_pinned_one_is_imported(tmp_path, keys):
    both = tmp_path / "both.asc"
    both.write_text(keys["evil"][0].read_text() + keys["good"][0].read_text())
    proc = run_key_functions(tmp_path, f'import_key "file://{both}" {tmp_path}/k.asc {keys["good"][1]}')
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stdout + proc.stderr
    assert f"also holds key {keys['evil'][1]}, which is not pinned: not imported" in proc.stdout
    assert (tmp_path / "rpm.log").read_text() == f"--import {tmp_path}/k.asc.pinned\n"
    assert _fingerprints(tmp_path / "k.asc.pinned") == [keys["good"][1]]


def _fingerprints(armored: Path) -> list[str]:
    """The primary keys' fingerprints in an armoured file (what rpm --import would trust)."""
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", str(armored)],
                             capture_output=True, text=True, check=True).stdout
    lines = listing.splitlines()
    return [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith("pub:")]


def test_a_key_with_no_pin_is_refused_before_it_is_fetched(tmp_path, keys):
    armored, _ = keys["good"]
    proc = run_key_functions(tmp_path, f'import_key "file://{armored}" {tmp_path}/k.asc')
    assert proc.returncode == 1 and f"FAILED recipe=rhel9-x86_64 no pinned fingerprint for file://{armored}" in proc.stdout
    assert not (tmp_path / "k.asc").exists() and not (tmp_path / "rpm.log").exists()


def test_a_file_holding_no_key_is_refused(tmp_path, keys):
    page = tmp_path / "error.html"
    page.write_text("<html>503 Service Unavailable</html>\n")
    proc = run_key_functions(tmp_path, f'import_key "file://{page}" {tmp_path}/k.asc {keys["good"][1]}')
    assert proc.returncode == 1 and f"file://{page} holds no OpenPGP public key" in proc.stdout
    assert not (tmp_path / "rpm.log").exists()


@pytest.mark.parametrize("rpm_k, ok", [
    ("/x/r.rpm: digests signatures OK", True),
    ("/x/r.rpm: digests OK", False),  # unsigned: rpm -K alone would pass it
    ("/x/r.rpm: digests SIGNATURES NOT OK", False),  # signed by a key we did not import
])
def test_a_release_rpm_needs_a_good_signature(tmp_path, keys, rpm_k, ok):
    source = tmp_path / "release.rpm"
    source.write_bytes(b"not really an rpm")
    proc = run_key_functions(tmp_path, f'verified_rpm "file://{source}" {tmp_path}/r.rpm', rpm_k)
    assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
    if not ok:
        assert "is not signed by a pinned key" in proc.stdout
