#!/usr/bin/env python3
"""Benchmark the local target: cold build, warm build (cached base), smoke test, seed boot-to-ready.

Runs the real thing (root, debootstrap, chroot, HTCondor daemons) and prints a table of best-of-N
wall times against the targets, plus this process's peak RSS. Usage (as root):

    python benchmarks/local.py [--runs 3] [--cold-runs 1]
"""
from __future__ import annotations

import argparse
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

TARGETS = {"cold build": 180.0, "warm build + smoke test": 45.0, "seed boot-to-ready": 5.0}


def timed(func):
    start = time.monotonic()
    result = func()
    return time.monotonic() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm builds and smoke tests (best of N)")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold builds (each debootstraps anew)")
    args = parser.parse_args()
    recipe = load_recipe("debian13-local")
    rows: dict[str, list[float]] = {"cold build": [], "warm build": [], "smoke test": [], "seed boot-to-ready": []}
    with tempfile.TemporaryDirectory(prefix="condor-seed-bench-") as scratch:
        out = Path(scratch) / "out"
        for i in range(args.cold_runs):
            cold_cache = Path(scratch) / f"cold-cache-{i}"  # an empty cache: debootstrap runs
            seconds, _ = timed(lambda: build_local(recipe, cache_dir=cold_cache, out_dir=out))
            rows["cold build"].append(seconds)
        for _ in range(args.runs):
            seconds, _ = timed(lambda: build_local(recipe, cache_dir=default_cache_dir(), out_dir=out))
            rows["warm build"].append(seconds)
            seconds, smoke = timed(lambda: smoke_test_local(recipe, out_dir=out))
            rows["smoke test"].append(seconds)
            rows["seed boot-to-ready"].append(smoke.timings["boot to ready"])
    best = {name: min(values) for name, values in rows.items() if values}
    if "warm build" in best and "smoke test" in best:
        best["warm build + smoke test"] = best["warm build"] + best["smoke test"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'measure':<26}{'best s':>9}{'runs':>6}{'target':>10}  ok")
    for name, value in best.items():
        target = TARGETS.get(name)
        runs = len(rows.get(name, [])) or "-"
        verdict = "" if target is None else ("yes" if value <= target else "NO")
        print(f"{name:<26}{value:>9.1f}{runs!s:>6}{(f'≤ {target:.0f}' if target else ''):>10}  {verdict}")
    print(f"{'peak RSS (this process)':<26}{peak_mb:>9.0f}{'':>6}{'≤ 300':>10}  {'yes' if peak_mb <= 300 else 'NO'} (MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
