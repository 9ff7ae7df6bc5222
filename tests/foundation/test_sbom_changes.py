"""CycloneDX SBOMs from the bake's package list, and `invoke changes` between two builds."""
import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from condor_seed import manifest, sbom
from condor_seed.changes import diff
from condor_seed.packages import compare_evr
from condor_seed.packages import Package, PackageList, parse_list
from condor_seed.paths import PROJECT_DIR

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rhel9-packages.tsv"
WHEN = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def rhel_list():
    return parse_list(FIXTURE.read_text(), "rpm")


@pytest.fixture(scope="module")
def rhel_sbom(rhel_list, tmp_path_factory):
    return sbom.write(rhel_list, tmp_path_factory.mktemp("out"), image_name="htcondor-seed-rhel9-x86_64",
                      build_id="b1", distro="rhel-9", built_at=WHEN, properties={"recipe": "rhel9-x86_64"})


def test_sbom_is_valid_cyclonedx_with_a_purl_per_package(rhel_sbom, rhel_list):
    text = rhel_sbom.path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    purls = {c["purl"] for c in document["components"]}
    assert len(purls) == len(rhel_list.packages) == rhel_sbom.components == 601
    assert "pkg:rpm/redhat/condor@24.0.12-1.el9?arch=x86_64&distro=rhel-9" in purls
    assert any("&epoch=" in p for p in purls)
    assert document["metadata"]["component"]["name"] == "htcondor-seed-rhel9-x86_64"


def test_the_validator_is_real(rhel_sbom):
    document = json.loads(rhel_sbom.path.read_text())
    document["components"][0]["type"] = "not-a-type"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is not None


def test_same_build_same_bytes_and_digest(rhel_list, rhel_sbom, tmp_path):
    again = sbom.write(rhel_list, tmp_path, image_name="htcondor-seed-rhel9-x86_64", build_id="b1", distro="rhel-9",
                       built_at=WHEN, properties={"recipe": "rhel9-x86_64"})
    assert again.path.read_bytes() == rhel_sbom.path.read_bytes() and again.sha256 == rhel_sbom.sha256


def test_debian_purls_keep_the_epoch_in_the_version(tmp_path):
    packages = PackageList("deb", (Package("htcondor", "0", "23.9.6+dfsg", "1", "amd64"),
                                   Package("libc6", "0", "2.41", "12", "amd64"),
                                   Package("perl-base", "1", "5.40.1", "5", "amd64")))
    written = sbom.write(packages, tmp_path, image_name="seed", build_id="d1", distro="debian-13", built_at=WHEN)
    purls = {c["purl"] for c in json.loads(written.path.read_text())["components"]}
    assert "pkg:deb/debian/htcondor@23.9.6%2Bdfsg-1?arch=amd64&distro=debian-13" in purls
    assert "pkg:deb/debian/perl-base@1:5.40.1-5?arch=amd64&distro=debian-13" in purls
    assert sbom.read_versions(written.path)[("perl-base", "amd64")] == "1:5.40.1-5"


@pytest.mark.parametrize("old, new, sign", [
    ("24.0.12-1.el9", "24.0.13-1.el9", 1), ("24.0.9-1.el9", "24.0.10-1.el9", 1), ("1.0-1", "1:0.9-1", 1),
    ("2.41-12", "2.41-12+deb13u1", 1), ("1.0~rc1-1", "1.0-1", 1), ("1.2.3-4.el9_4", "1.2.3-4.el9", -1),
    ("5.1-1", "5.1-1", 0), ("1.0a-1", "1.0-1", -1),
])
def test_version_order(old, new, sign):
    assert compare_evr(new, old) == sign


def test_diff_sorts_packages_into_upgraded_added_removed_and_the_short_form(rhel_list):
    old = {(p.name, p.arch): p.evr for p in rhel_list.packages}
    new = dict(old)
    new[("condor", "x86_64")] = "24.0.13-1.el9"
    new[("openssl-libs", "x86_64")] = "1:3.2.2-6.el9_5.1"
    new[("kernel", "x86_64")] = "5.14.0-503.el9"
    removed = next(iter(sorted(old)))
    del new[removed]
    changes = diff(old, new, old_htcondor="24.0.12", new_htcondor="24.0.13", old_base="ami-1", new_base="ami-1")
    assert [k for k, *_ in changes.upgraded] == [("condor", "x86_64")]
    assert [k for k, _ in changes.added] == [("kernel", "x86_64"), ("openssl-libs", "x86_64")]
    assert [k for k, _ in changes.removed] == [removed]
    assert changes.short() == "condor 24.0.12→24.0.13, 4 pkgs" and changes.base_image is None
    assert diff(old, old).short() == "no changes" and diff(old, old).empty


def test_invoke_changes_shows_a_planted_upgrade(rhel_list, tmp_path):
    """Two recorded builds (the second with a newer condor and openssl), read back by the real CLI."""
    upgraded = PackageList("rpm", tuple(
        dataclasses.replace(p, version="24.0.13") if p.name == "condor" else p for p in rhel_list.packages))
    for build_id, packages, version in (("b1", rhel_list, "24.0.12"), ("b2", upgraded, "24.0.13")):
        written = sbom.write(packages, tmp_path, image_name="seed", build_id=build_id, distro="rhel-9", built_at=WHEN)
        manifest.append_build(manifest.path_for("rhel9-x86_64", tmp_path / "manifests"), manifest.new_build(
            recipe="rhel9-x86_64", build_id=build_id, region_amis={"us-east-1": f"ami-{build_id}"},
            custom_data={"htcondor_version": version, "base_ami": "ami-base", "sbom": written.path,
                         "sbom_sha256": written.sha256}))

    def changes(*flags):
        return subprocess.run([sys.executable, "-m", "invoke", "changes", "--recipe", "rhel9-x86_64", "--out",
                               str(tmp_path), *flags], cwd=PROJECT_DIR, capture_output=True, text=True)

    full = changes()
    assert full.returncode == 0, full.stderr
    assert "rhel9-x86_64: b1 → b2" in full.stdout and "HTCondor: 24.0.12 → 24.0.13" in full.stdout
    assert "↑ condor.x86_64 24.0.12-1.el9 → 24.0.13-1.el9" in full.stdout and "base image: unchanged" in full.stdout
    assert changes("--short").stdout.strip() == "condor 24.0.12→24.0.13, 1 pkg"
    only_one = changes("--build", "b1")
    assert only_one.returncode != 0 and "needs two" in only_one.stderr and "Traceback" not in only_one.stderr
