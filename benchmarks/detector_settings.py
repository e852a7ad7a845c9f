"""MTCNN's working-size settings, compared on the same images in one run (interleaved, so that the
machine's load falls on every setting alike): faces found (the detection that holds the annotated
face, as `fkd evaluate` matches it) and milliseconds a photo, on dev `test/` frames and on the
pasted-faces photos (960x720; built by benchmarks/pasted_faces.py into --pasted if missing).

    python benchmarks/detector_settings.py --data-dir data [--images 150] [--pasted pasted]

Settings: `min_side` (enlarge photos whose longest side is smaller to this first; 0 = never) and
`min_face_fraction` (faces smaller than this share of the longest side are not looked for).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SETTINGS = {
    "previous (enlarge to 400, faces from 2.5%)": dict(min_side=400, min_face_fraction=0.025),
    "current default (no enlargement, faces from 2.5%)": dict(min_side=0, min_face_fraction=0.025),
    "enlarge to 400, faces from 5%": dict(min_side=400, min_face_fraction=0.05),
    "no enlargement, faces from 5%": dict(min_side=0, min_face_fraction=0.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--pasted", type=Path, default=Path("pasted"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from fkd_cli.data import ImageCache, read_split
    from fkd_cli.detect import MTCNNDetector, match_detection

    torch.set_num_threads(args.threads)
    if not (args.pasted / "test").is_dir():
        from pasted_faces import build

        build(args.data_dir, args.pasted)
    detectors = {name: MTCNNDetector(**kwargs) for name, kwargs in SETTINGS.items()}
    for label, folder in (("dev test frames", args.data_dir), ("pasted 960x720 photos", args.pasted)):
        split = read_split(folder, "test")
        images = ImageCache(split.paths[: args.images]).load_all()
        found = {name: 0 for name in detectors}
        seconds = {name: 0.0 for name in detectors}
        for i in range(len(images)):
            for name, detector in detectors.items():
                started = time.perf_counter()
                detections = detector.detect(images[i])
                seconds[name] += time.perf_counter() - started
                found[name] += match_detection(detections, split.keypoints[i]) is not None
        base = seconds[next(iter(SETTINGS))]
        print(f"{label}, {len(images)} images, {args.threads} thread(s):")
        for name in detectors:
            print(f"  {name:48s} found {found[name]}/{len(images)}  {1000 * seconds[name] / len(images):6.1f} ms a photo  "
                  f"({base / seconds[name]:.2f}x the previous speed)")


if __name__ == "__main__":
    main()
