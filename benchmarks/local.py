#!/usr/bin/env python3
"""Benchmark the local target: cold build, warm build (cached base), smoke test, seed boot-to-ready.

Runs the real thing (root, debootstrap, chroot, HTCondor daemons) for each local recipe and prints a
table of best-of-N wall times against the targets, the machine's load while it ran, and this
process's peak RSS. Usage (as root; boots pools, so take the shared lock on a shared machine):

    flock /tmp/condor-seed-local-pool.lock python benchmarks/local.py [--runs 3] [--cold-runs 1]
        [--recipe debian13-local,debian-sid-local]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from condor_seed.local.build import build_local  # noqa: E402
from condor_seed.local.smoke import smoke_test_local  # noqa: E402
from condor_seed.local.rootfs import default_cache_dir  # noqa: E402
from condor_seed.recipe import load_recipe  # noqa: E402

LOCAL_RECIPES = ("debian13-local", "debian-sid-local")
TARGETS = {"cold build": 180.0, "warm build + smoke test": 45.0, "seed boot-to-ready": 5.0}


def timed(func):
    start = time.monotonic()
    result = func()
    return time.monotonic() - start, result


def bench_recipe(name: str, runs: int, cold_runs: int, scratch: Path) -> dict[str, list[float]]:
    recipe = load_recipe(name)
    rows: dict[str, list[float]] = {"cold build": [], "warm build": [], "smoke test": [], "seed boot-to-ready": []}
    out = scratch / name / "out"
    for i in range(cold_runs):
        cold_cache = scratch / name / f"cold-cache-{i}"  # an empty cache: debootstrap runs
        seconds, _ = timed(lambda: build_local(recipe, cache_dir=cold_cache, out_dir=out))
        rows["cold build"].append(seconds)
    for _ in range(runs):
        seconds, _ = timed(lambda: build_local(recipe, cache_dir=default_cache_dir(), out_dir=out))
        rows["warm build"].append(seconds)
        seconds, smoke = timed(lambda: smoke_test_local(recipe, out_dir=out))
        rows["smoke test"].append(seconds)
        rows["seed boot-to-ready"].append(smoke.timings["boot to ready"])
    return rows


def print_table(name: str, rows: dict[str, list[float]]) -> None:
    best = {measure: min(values) for measure, values in rows.items() if values}
    if "warm build" in best and "smoke test" in best:
        best["warm build + smoke test"] = best["warm build"] + best["smoke test"]
    print(f"\n{name}\n{'measure':<26}{'best s':>9}{'runs':>6}{'target':>10}  ok")
    for measure, value in best.items():
        target = TARGETS.get(measure)
        runs = len(rows.get(measure, [])) or "-"
        verdict = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{measure:<26}{value:>9.1f}{runs!s:>6}{(f'≤ {target:.0f}' if target else ''):>10}  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="warm builds and smoke tests (best of N)")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold builds (each debootstraps anew)")
    parser.add_argument("--recipe", default=",".join(LOCAL_RECIPES), help="comma-separated local recipes")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory(prefix="condor-seed-bench-") as scratch:
        for name in args.recipe.split(","):
            results[name] = bench_recipe(name, args.runs, args.cold_runs, Path(scratch))
    for name, rows in results.items():
        print_table(name, rows)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'peak RSS (this process)':<26}{peak_mb:>9.0f}{'':>6}{'≤ 300':>10}  {'yes' if peak_mb <= 300 else 'NO'} (MB)")
    print(f"machine: {os.cpu_count()} cores, 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (a shared machine: other work slows every figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
