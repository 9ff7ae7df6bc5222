"""Benchmark: the "nothing changed" `invoke nightly` for every EC2 recipe, against the emulator.

Setup: one real nightly builds, smoke-tests and publishes every EC2 recipe against the emulator (the
AWS tests' guest simulator plays the builders and the seeds; the publish tests' hook answers the
calls the emulator lacks). Then the nightly runs again `--runs` times with nothing changed, each with
a fresh boto3 session (as a new process would have), and once more as the command a CI job runs
(`python -m invoke nightly` in a subprocess, interpreter start included). Each nightly first asks
the HTCondor repositories for their newest condor: here a local HTTP server serving repository
metadata (repomd.xml + gzipped primary, ~300 packages each) for the 4 (series, EL, arch) the
recipes use. Run 1 starts with an empty cache; later runs find the cached revisions. Reported per run:

- wall time, repository check included (target <= 3 s for all recipes);
- API calls, in all and per recipe (target <= 10 per recipe), and by operation;
- repository requests: repomd.xml (target: one per repository) and primary metadata (target: none
  when the cached revision matches);
- RunInstances calls (must be 0) and whether every recipe said "up to date".

The emulator (moto) runs in this process; its request handling counts in the wall time.
Run: python benchmarks/nightly.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "benchmarks")]  # this checkout's condor_seed; aws_emulated

TARGET_SECONDS, TARGET_CALLS = 3.0, 10


def publish_everything(endpoint: str, recipes, manifest_dir: Path) -> None:
    """The first nightly: every recipe built, smoke-tested and published, as a real run leaves them."""
    import boto3
    import pytest

    from condor_seed.emulator.aws import GuestSimulator, add_rhel_images, patch_console_output
    from condor_seed.aws.session import Aws
    from condor_seed.nightly import BUILT, NightlyOptions, nightly
    from condor_seed.emulator.account import Emulated

    add_rhel_images("us-east-1")
    session = boto3.Session(region_name="us-east-1")
    Emulated(session)  # answers image block public access and EnableImageDeprecation
    guest = GuestSimulator(endpoint).start()
    patch = pytest.MonkeyPatch()
    patch_console_output(patch, guest.console)
    try:
        opts = NightlyOptions(region="us-east-1", poll_interval=0.05, build_timeout=60, smoke_timeout=60,
                              console_every=0.1, manifest_dir=manifest_dir)
        runs = nightly(Aws(session=session), recipes, opts)
    finally:
        guest.stop()
        patch.undo()
    failed = [f"{r.name}: {r.action}" for r in runs if r.action != BUILT]
    if failed:
        raise SystemExit("setup nightly failed: " + "; ".join(failed))


def serve_repositories(root: Path, recipes):
    """The local HTCondor repository server, one repository per (series, EL, arch) the recipes use."""
    from condor_seed.emulator.htcondor_repo import FixtureRepo
    from condor_seed.upstream import MIRROR_ENV, repo_for

    repo = FixtureRepo(root).__enter__()
    for key in dict.fromkeys(repo_for(r) for r in recipes):
        repo.publish(key.series, key.el, key.arch, [f"{key.series}.12", f"{key.series}.13"])
    os.environ[MIRROR_ENV] = repo.url  # the nightly (and the CLI subprocess) read metadata from here
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    return repo


def nothing_changed(recipes, repo, cold: bool = False) -> dict:
    import boto3

    from condor_seed.emulator.aws import Recorder
    from condor_seed.aws.session import Aws
    from condor_seed.nightly import UP_TO_DATE, NightlyOptions, nightly

    from condor_seed.upstream import default_cache_path

    if cold:
        default_cache_path().unlink(missing_ok=True)
    repo.requests.clear()
    start = time.monotonic()
    session = boto3.Session(region_name="us-east-1")  # a fresh session and clients, as in a new process
    recorder = Recorder(session)
    runs = nightly(Aws(session=session), recipes, NightlyOptions(region="us-east-1"))
    wall = time.monotonic() - start
    return {"wall": wall, "calls": len(recorder.calls), "by_op": recorder.count(),
            "run_instances": recorder.count()["RunInstances"], "repomd": repo.repomd_requests(),
            "primary": repo.metadata_requests(), "up_to_date": all(r.action == UP_TO_DATE for r in runs)}


def from_the_command_line() -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", "nightly", "--recipe", "all", "--region", "us-east-1"],
                          cwd=PROJECT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    return time.monotonic() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from aws_emulated import start_emulator

    server, endpoint = start_emulator()
    try:
        from condor_seed.nightly import select_recipes

        recipes = select_recipes("all")
        with tempfile.TemporaryDirectory() as tmp:
            repo = serve_repositories(Path(tmp) / "htcondor", recipes)
            setup_start = time.monotonic()
            publish_everything(endpoint, recipes, Path(tmp) / "manifests")
            setup = time.monotonic() - setup_start
            results = [nothing_changed(recipes, repo, cold=i == 0) for i in range(args.runs)]
            cli_wall, cli = from_the_command_line()
            repos = len(repo.requests and {p.rsplit("/repodata", 1)[0] for p in repo.requests})
            repo.__exit__(None, None, None)
    finally:
        server.stop()

    n = len(recipes)
    print(f"condor-seed nightly, nothing changed, {n} EC2 recipes ({', '.join(r.name for r in recipes)}) "
          f"in {len({region for r in recipes for region in r.regions})} regions; setup (first nightly "
          f"publishing all of them): {setup:.1f} s\n")
    header = (f"{'run':>4} {'wall s':>7} {'API calls':>9} {'per recipe':>10} {'repomd':>6} {'primary':>7} "
              f"{'RunInstances':>12} {'all up to date':>14}")
    print(header)
    print("-" * len(header))
    for i, r in enumerate(results, 1):
        print(f"{i:>4} {r['wall']:>7.2f} {r['calls']:>9} {r['calls'] / n:>10.2f} {r['repomd']:>6} {r['primary']:>7} "
              f"{r['run_instances']:>12} {'yes' if r['up_to_date'] else 'NO':>14}"
              + ("   (empty repository cache)" if i == 1 else ""))
    wall = statistics.median(r["wall"] for r in results)
    calls = max(r["calls"] for r in results)
    print(f"{'med':>4} {wall:>7.2f} {calls:>9} {calls / n:>10.2f}")
    print(f"{'cli':>4} {cli_wall:>7.2f}   (`python -m invoke nightly --recipe all`: interpreter start, imports and "
          f"the table included; exit {cli.returncode})")
    print("\nAPI calls of one run by operation:")
    for op, count in sorted(results[-1]["by_op"].items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:>4}  {op}")
    print("\nthe command's table:\n" + cli.stdout.rstrip())
    launched = sum(r["run_instances"] for r in results)
    warm = results[1:] or results
    repo_ok = (all(r["repomd"] == repos for r in results) and results[0]["primary"] == repos
               and all(r["primary"] == 0 for r in warm))
    print(f"\nrepository check: {repos} repositories; one repomd.xml each per run; primary metadata read "
          f"{results[0]['primary']}x with an empty cache, {max(r['primary'] for r in warm)}x when the cached revision "
          f"matches: {'ok' if repo_ok else 'MISSED'}")
    ok = (wall <= TARGET_SECONDS and calls / n <= TARGET_CALLS and launched == 0 and repo_ok
          and all(r["up_to_date"] for r in results) and cli.returncode == 0 and cli_wall <= TARGET_SECONDS)
    print(f"\nwall {wall:.2f} s in process, {cli_wall:.2f} s from the command line (target <= {TARGET_SECONDS:g} s); "
          f"{calls / n:.2f} API calls per recipe (target <= {TARGET_CALLS}); RunInstances {launched} (must be 0): "
          f"{'ok' if ok else 'MISSED'}")
    if cli.returncode:
        print(cli.stderr, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
