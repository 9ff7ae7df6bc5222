"""The bake's package report: the real rendered shell function, run by bash, read back by Python.

RHEL: `rpm` cannot run here, so a stand-in prints a realistic 601-package el9 list (the only fake).
Debian: the function runs the host's real dpkg-query, the same command as in the local rootfs.
"""
import subprocess
from pathlib import Path

import pytest

from condor_seed.packages import PackageReportError, parse_list, read_report, report_lines
from condor_seed.recipe import load_recipe
from condor_seed.render import MARKERS, _environment

MARKER = MARKERS["bake"]
FIXTURE = Path(__file__).parent.parent / "fixtures" / "rhel9-packages.tsv"
CONSOLE_KEEPS = 64 * 1024  # GetConsoleOutput returns the last 64 KB


def run_report(recipe_name: str, tmp_path: Path, path_dirs: list[Path] = ()) -> str:
    recipe = load_recipe(recipe_name)
    function = _environment().get_template("bake/report-packages.sh.j2").render(
        recipe.context(markers=MARKERS) | {"recipe": recipe.name})
    script = tmp_path / "report.sh"
    # mktemp -p /run as in the image; the bake's console() writes to stdout (and /dev/console)
    script.write_text("set -Eeuo pipefail\nMARKER=%r\nconsole() { echo \"$*\"; }\n%s\nreport_packages\n"
                      % (MARKER, function.replace("-p /run", f"-p {tmp_path}")))
    env = {"PATH": ":".join([*map(str, path_dirs), "/usr/bin", "/bin"]), "LC_ALL": "C"}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def fake_rpm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # prints the list unsorted, as rpm -qa does; fails on any other use
    (bin_dir / "rpm").write_text(f"#!/bin/bash\n[ \"$1\" = -qa ] || exit 2\ntac {FIXTURE} | tr -d '\\r'\n")
    (bin_dir / "rpm").chmod(0o755)
    return bin_dir


def test_rpm_report_round_trips_600_packages(tmp_path, fake_rpm):
    out = run_report("rhel9-x86_64", tmp_path, [fake_rpm])
    got = read_report(out, MARKER)
    want = parse_list(FIXTURE.read_text(), "rpm")
    assert got == want and got.format == "rpm" and len(got.packages) == 601
    assert got.version_of("condor") == "24.0.12-1.el9"
    # the Python reference (the guest simulator prints it) writes the same format: begin line alike
    reference = report_lines(want, MARKER)
    assert reference[0] == out.splitlines()[0] and read_report("\n".join(reference), MARKER) == want


def test_report_survives_the_consoles_64kb_window_even_printed_twice(tmp_path, fake_rpm):
    lines = run_report("rhel9-x86_64", tmp_path, [fake_rpm]).splitlines()
    report = "".join(f"{line}\n{line}\n" for line in lines)  # cloud-init's copy and our /dev/console copy
    assert len(report) < 40 * 1024, f"{len(report)} bytes: too close to GetConsoleOutput's 64 KB"
    boot = "".join(f"[   {i:6d}.123456] kernel: some boot message number {i}\n" for i in range(6000))
    shutdown = f"{MARKER} SUCCESS recipe=rhel9-x86_64 scan=clean\n" + "[  OK  ] Stopped a unit.\n" * 400
    console = (boot + report + shutdown)[-CONSOLE_KEEPS:]
    assert len(read_report(console, MARKER).packages) == 601


def test_a_report_cut_off_or_damaged_is_an_error_not_a_short_list(tmp_path, fake_rpm):
    lines = run_report("rhel9-x86_64", tmp_path, [fake_rpm]).splitlines()
    with pytest.raises(PackageReportError, match="first line is not in the console"):
        read_report("\n".join(lines[1:]), MARKER)
    with pytest.raises(PackageReportError, match="misses 1 of"):
        read_report("\n".join(lines[:5] + lines[6:]), MARKER)
    with pytest.raises(PackageReportError, match="no end line"):
        read_report("\n".join(lines[:-1]), MARKER)
    with pytest.raises(PackageReportError, match="no package report"):
        read_report(f"{MARKER} SUCCESS recipe=x scan=clean\n", MARKER)
    damaged = lines[:3] + [lines[3][:-6] + "AAAAAA"] + lines[4:]
    with pytest.raises(PackageReportError, match="does not decode|sha256 does not match"):
        read_report("\n".join(damaged), MARKER)


def test_deb_report_from_the_real_dpkg_database(tmp_path):
    out = run_report("debian13-local", tmp_path)
    got = read_report(out, MARKER)
    real = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
                          capture_output=True, text=True, check=True).stdout
    installed = {name: version for status, name, version in (line.split("\t") for line in real.splitlines())
                 if status.startswith("ii")}
    assert got.format == "deb" and len(got.packages) == len(installed) > 100
    # epoch, upstream version and revision split apart and join back to what dpkg says
    assert {p.name: p.evr for p in got.packages} == installed
    assert any(p.epoch != "0" for p in got.packages) and all(p.arch for p in got.packages)
