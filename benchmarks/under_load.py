"""`fkd predict` beside a CPU hog (another process keeping every core busy), as whole processes:
alone, beside the hog with fkd's defaults (OpenMP threads waiting passively), with OpenMP's active
waiting put back (OMP_WAIT_POLICY=ACTIVE, the library's default), and with --threads 1. Prints seconds and ratios. Run it more than once: beside a hog the
figures move by a third from run to run on a 2-core machine.

    python benchmarks/under_load.py --photos DIR   # e.g. 20 photos of 640x480-1024x768 (benchmarks/vs_dlib.py makes such)
    python benchmarks/under_load.py --photos DIR --hog-cores 1   # the hog on one core: one core left free

With every core busy a CPU-bound job's fair share is 1/2 of each core on a 2-core machine, 2x its time
alone; with `--hog-cores K` the hog leaves cores - K free, and the fair slowdown is cores / (cores - K / 2).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path


def spin(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x += 1


def timed(photos: Path, env: dict, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fkd_cli", "predict", str(photos), "--no-draw", "--quiet", *extra],
                   env={**os.environ, **env}, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--hog-cores", type=int, default=0, help="spinning processes (default: one a core)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    if not 0 <= args.hog_cores <= cores:
        parser.error(f"--hog-cores must be 1 to {cores} (this machine's cores), or 0 for all of them")
    busy = args.hog_cores or cores
    alone = timed(args.photos, {})
    rows = [("alone, defaults", alone)]
    hog = [multiprocessing.Process(target=spin, args=(time.time() + 600,), daemon=True) for _ in range(busy)]
    for p in hog:
        p.start()
    try:
        time.sleep(1)
        rows.append(("beside the hog, defaults", timed(args.photos, {})))
        rows.append(("beside the hog, OMP_WAIT_POLICY=ACTIVE", timed(args.photos, {"OMP_WAIT_POLICY": "ACTIVE"})))
        rows.append(("beside the hog, --threads 1", timed(args.photos, {}, "--threads", "1")))
    finally:
        for p in hog:
            p.terminate()
    # each hog process takes half of the core it shares with fkd, the free cores stay fkd's
    fair = cores / (cores - busy / 2)
    print(f"{len(list(args.photos.iterdir()))} photos, {cores} cores, the hog busy on {busy} of them "
          f"(a fair share is {fair:.2f}x the time alone)")
    for name, seconds in rows:
        print(f"{name:<42} {seconds:>6.1f} s  {seconds / alone:>5.2f}x alone  {seconds / alone / fair:>5.2f}x the fair share")


if __name__ == "__main__":
    main()
