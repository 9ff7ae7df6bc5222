"""Two processes updating one manifest lose nothing (a file lock around read-modify-write)."""
from __future__ import annotations

import multiprocessing

from condor_seed import manifest

ROUNDS = 40


def _writer(path: str, who: str) -> None:
    for n in range(ROUNDS):
        manifest.append_build(path, manifest.new_build(
            recipe="r", build_id=f"{who}-{n}", region_amis={"us-east-1": "ami-1"}, custom_data={}))
        manifest.update_build(path, None, custom_data={f"{who}-{n}": "seen"})


def test_concurrent_processes_lose_no_update(tmp_path):
    path = str(tmp_path / "r.json")
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(path, who)) for who in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    builds = manifest.load(path)["builds"]
    assert sorted(b["packer_run_uuid"] for b in builds) == sorted(f"{w}-{n}" for w in "ab" for n in range(ROUNDS))
    marks = {k for b in builds for k in b["custom_data"]}
    assert len(marks) == 2 * ROUNDS  # every update_build landed on some build, none overwritten away
