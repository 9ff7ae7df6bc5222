"""scripts/setup, the first thing a newcomer runs. The stock-machine path itself (system Python, sudo's
PATH, a fresh venv) is what `.ci/run` does before the tests; scripts/check-stock-setup repeats it in
fresh Debian 12 and 13 chroots. Here: what must fail early, with one line."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from condor_seed.paths import PROJECT_DIR


def _min_python() -> str:
    return re.search(r'^MIN_PYTHON=([\d.]+)', (PROJECT_DIR / "scripts/setup").read_text(), re.M).group(1)


def test_setup_and_pyproject_agree_on_the_python_needed():
    pyproject = (PROJECT_DIR / "pyproject.toml").read_text()
    assert f'requires-python = ">={_min_python()}"' in pyproject


def test_too_old_python_is_one_line_and_creates_nothing(tmp_path):
    """An old interpreter cannot be installed here (every mirror has 3.11+), so a stand-in answers the
    two questions setup asks a Python (its version, and whether it is recent enough) as 3.9 would."""
    old = tmp_path / "bin/python3"
    old.parent.mkdir()
    old.write_text('#!/bin/sh\ncase "$*" in *print*) echo 3.9 ;; *) exit 1 ;; esac\n')
    old.chmod(0o755)
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "scripts/setup", project / "scripts/setup")
    env = dict(os.environ, PATH=f"{old.parent}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(project / "scripts/setup")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"setup: Python {_min_python()} or newer is needed; {old} is 3.9"]
    assert sorted(p.name for p in project.iterdir()) == ["scripts"], "no venv, nothing installed"
