"""The Invoke tasks, run as a user runs them, against the emulator (only calls it has)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from publish_helpers import PARAMETER, make_seed

PROJECT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)


def test_list_and_prune_dry_run_from_the_command_line(emulated):
    image_id = make_seed(emulated.setup, public=True)
    emulated.setup.ssm("us-east-1").put_parameter(Name=PARAMETER, Value=image_id, Type="String",
                                                  DataType="aws:ec2:image", Overwrite=True)
    listed = invoke("list", "--recipe", "rhel9-x86_64", "--regions", "us-east-1,us-west-2")
    assert listed.returncode == 0, listed.stderr
    assert image_id in listed.stdout and "latest" in listed.stdout and "us-west-2: no seed images" in listed.stdout

    pruned = invoke("prune", "--recipe", "rhel9-x86_64", "--keep", "1", "--regions", "us-east-1", "--dry-run")
    assert pruned.returncode == 0, pruned.stderr
    assert f"keep         {image_id}" in pruned.stdout


def test_publish_needs_a_source(emulated):
    result = invoke("publish-ami")
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == "error: give either --manifest PATH or --ami ID --region R"
    missing = invoke("publish-ami", "--manifest", "/nonexistent/m.json")
    assert missing.returncode != 0 and "no such manifest" in missing.stderr


def test_sigterm_mid_copy_undoes_the_copy_and_a_rerun_finishes(emulated, monkeypatch, tmp_path):
    """SIGTERM while a region's copy is pending: publish stops that wait at once, removes the copy it
    made, exits 130 with one line; the same command run again publishes everywhere. (A private recipe
    without deprecation: the emulator lacks image block public access and deprecation, and the
    in-process hooks that answer them do not reach a subprocess.)"""
    import json
    import os
    import signal
    import time

    from condor_seed.emulator.aws import backend, private_recipe
    from publish_helpers import SlowCopies, write_manifest

    recipe = private_recipe(tmp_path / "recipes", PROJECT)  # public needs image block public access: not in moto
    recipe.write_text(recipe.read_text().replace("prune: false}", "prune: false, deprecate_after_days: null}"))
    image_id = make_seed(emulated.setup, recipe=recipe.stem)
    path = write_manifest(tmp_path, image_id, recipe=recipe.stem)
    data = json.loads(path.read_text())
    data["builds"][-1]["custom_data"]["recipe"] = str(recipe)  # found by path, not in the project's recipes/
    path.write_text(json.dumps(data))
    from moto.ec2.models.amis import AmiBackend

    instant_copy = AmiBackend.copy_image
    SlowCopies(monkeypatch, seconds=600)  # the copy stays pending far longer than the test
    command = [sys.executable, "-m", "invoke", "publish-ami", "--manifest", str(path),
               "--regions", "us-east-1,us-east-2", "--poll-interval", "0.05"]
    proc = subprocess.Popen(command, cwd=PROJECT, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(ami.state == "pending" for ami in backend("us-east-2").amis.values()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # inside the wait for the copy
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)  # before the fix: killed outright (-15); Ctrl-C hung on the threads
    assert proc.returncode == 130, err
    assert "interrupted: stopping every publish job" in err
    assert "us-east-2: undoing: removing" in err
    assert err.strip().splitlines()[-1].startswith("interrupted: stopped;"), err
    assert not [ami for ami in backend("us-east-2").amis.values() if ami.state == "pending"]

    monkeypatch.setattr(AmiBackend, "copy_image", instant_copy)  # copies complete at once again
    rerun = invoke("publish-ami", "--manifest", str(path), "--regions", "us-east-1,us-east-2", "--poll-interval", "0.05")
    assert rerun.returncode == 0, rerun.stderr
    assert "us-east-1: published" in rerun.stdout and "us-east-2: published" in rerun.stdout
