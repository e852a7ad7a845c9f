"""Start-up: one photo from the command to its result, as a whole process (`python -m fkd_cli predict
PHOTO --no-draw --quiet --json F`), and `import torch` alone for reference, in alternating rounds.

    python benchmarks/startup.py [--photo photos/astronaut.jpg] [--rounds 5] [--against /tmp/fkd-old]

With `--against ROOT` the same command runs from that checkout too (its own fkd_cli, imported from its
folder), taking turns with this one in every round: this machine's speed drifts too much for timings
taken minutes apart to be compared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=HERE / "photos" / "astronaut.jpg")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None, help="another fkd checkout to time in turn")
    args = parser.parse_args()

    roots = {"this": HERE}
    if args.against is not None:
        roots[str(args.against)] = args.against.resolve()
    times: dict[str, list[float]] = {name: [] for name in [*roots, "import torch"]}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            names = list(roots) if round_ % 2 == 0 else list(reversed(roots))
            for name in names:
                out = Path(tmp) / f"{round_}-{len(times[name])}.json"
                command = [sys.executable, "-m", "fkd_cli", "predict", str(args.photo.resolve()), "--no-draw", "--quiet", "--json", str(out)]
                times[name].append(seconds(command, roots[name]))
            times["import torch"].append(seconds([sys.executable, "-c", "import torch"], HERE))
    print(f"one photo ({args.photo.name}) from the command to its result, {args.rounds} alternating rounds:")
    for name, values in times.items():
        print(f"  {name:24s} median {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    if args.against is not None:
        this, other = (statistics.median(times[name]) for name in roots)
        print(f"  this checkout starts {other / this:.2f}x as fast ({other - this:+.2f} s)")


if __name__ == "__main__":
    main()
