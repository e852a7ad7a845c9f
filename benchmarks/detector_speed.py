"""The default face detector's speed and recall on three kinds of photo, for comparing revisions of
fkd side by side: dev `test/` frames (about 300x300), the pasted-faces photos (960x720) and the same
photos shrunk to 640x480. Milliseconds a photo on one thread; faces found (the detection that holds
the annotated face, as `fkd evaluate` matches it).

    python benchmarks/detector_speed.py --data-dir data --pasted pasted
    git worktree add /tmp/fkd-old REV   # then, alternated with the line above:
    python benchmarks/detector_speed.py --data-dir data --pasted pasted --package-root /tmp/fkd-old
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--pasted", type=Path, default=Path("pasted"), help="made by benchmarks/pasted_faces.py (built here if missing)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--package-root", type=Path, default=None, help="import fkd_cli from this checkout instead")
    args = parser.parse_args()
    if args.package_root is not None:
        sys.path.insert(0, str(args.package_root.resolve()))

    import torch

    import fkd_cli
    from detector_settings import photo_sets
    from fkd_cli.detect import build_detector, match_detection

    torch.set_num_threads(1)
    detector = build_detector("mtcnn")
    print(f"fkd_cli from {Path(fkd_cli.__file__).parent}, one thread")
    for label, photos in photo_sets(args.data_dir, args.pasted, args.images):
        found, seconds = 0, 0.0
        for image, points in photos:
            started = time.perf_counter()
            detections = detector.detect(image)
            seconds += time.perf_counter() - started
            found += match_detection(detections, points) is not None
        print(f"  {label:26s} found {found}/{len(photos)}  {1000 * seconds / len(photos):6.1f} ms a photo")


if __name__ == "__main__":
    main()
