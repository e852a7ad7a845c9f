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
    parser.add_argument("--pasted", type=Path, default=Path("pasted"), help="made by benchmarks/pasted_faces.py")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--package-root", type=Path, default=None, help="import fkd_cli from this checkout instead")
    args = parser.parse_args()
    if args.package_root is not None:
        sys.path.insert(0, str(args.package_root.resolve()))

    import torch

    import fkd_cli
    from fkd_cli.data import ImageCache, read_split
    from fkd_cli.detect import build_detector, match_detection

    torch.set_num_threads(1)
    detector = build_detector("mtcnn")
    print(f"fkd_cli from {Path(fkd_cli.__file__).parent}, one thread")
    for label, folder, shrink in (("dev test frames", args.data_dir, 1.0), ("pasted 960x720 photos", args.pasted, 1.0),
                                  ("pasted photos at 640x480", args.pasted, 2 / 3)):
        split = read_split(folder, "test")
        images = ImageCache(split.paths[: args.images]).load_all()
        found, seconds = 0, 0.0
        for i in range(len(images)):
            image, points = images[i], split.keypoints[i]
            if shrink != 1.0:
                size = (round(image.shape[-2] * shrink), round(image.shape[-1] * shrink))
                image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="area")[0].round().to(torch.uint8)
                points = points * shrink
            started = time.perf_counter()
            detections = detector.detect(image)
            seconds += time.perf_counter() - started
            found += match_detection(detections, points) is not None
        print(f"  {label:26s} found {found}/{len(images)}  {1000 * seconds / len(images):6.1f} ms a photo")


if __name__ == "__main__":
    main()
