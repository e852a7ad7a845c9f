"""MTCNN's working-size settings, compared on the same images in one run (interleaved, so that the
machine's load falls on every setting alike): faces found (the detection that holds the annotated
face, as `fkd evaluate` matches it) and milliseconds a photo, on dev `test/` frames and on the
pasted-faces photos (960x720; built by benchmarks/pasted_faces.py into --pasted if missing).

    python benchmarks/detector_settings.py --data-dir data [--images 150] [--pasted pasted]

Settings: `min_face_px` (faces smaller than this many pixels of the photo are not looked for) and
`min_face_fraction` (nor those smaller than this share of the longest side); the pasted photos are also
measured shrunk to 640x480 (faces of about 40 to 130 px).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SETTINGS = {
    "faces from 20 px (and 2.5% of the side)": dict(min_face_px=20),
    "faces from 32 px (and 2.5%)": dict(min_face_px=32),
    "faces from 40 px (and 2.5%)": dict(min_face_px=40),
    "faces from 5% of the side (and 20 px)": dict(min_face_px=20, min_face_fraction=0.05),
}


def photo_sets(data_dir: Path, pasted: Path, count: int):
    """(label, [(image, annotated points), ...]) for the dev test frames, the pasted-faces photos
    (960x720; built into `pasted` if missing) and the same photos shrunk to 640x480 (faces of about
    40 to 130 px). fkd_cli is imported here, so a caller may point sys.path at another checkout first."""
    import cv2

    from fkd_cli.data import ImageCache, read_split

    if not (pasted / "test").is_dir():
        from pasted_faces import build

        build(data_dir, pasted)
    for label, folder, shrink in (("dev test frames", data_dir, 1.0), ("pasted 960x720 photos", pasted, 1.0),
                                  ("pasted photos at 640x480", pasted, 2 / 3)):
        split = read_split(folder, "test")
        images = ImageCache(split.paths[:count]).load_all()
        photos = []
        for i in range(len(images)):
            image, points = images[i], split.keypoints[i]
            if shrink != 1.0:
                size = (round(image.shape[1] * shrink), round(image.shape[0] * shrink))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                points = points * shrink
            photos.append((image, points))
        yield label, photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--pasted", type=Path, default=Path("pasted"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from fkd_cli.detect import MTCNNDetector, match_detection
    from fkd_cli.threads import set_threads

    set_threads(args.threads)
    detectors = {name: MTCNNDetector(**kwargs) for name, kwargs in SETTINGS.items()}
    for label, photos in photo_sets(args.data_dir, args.pasted, args.images):
        found = {name: 0 for name in detectors}
        seconds = {name: 0.0 for name in detectors}
        for image, points in photos:
            for name, detector in detectors.items():
                started = time.perf_counter()
                detections = detector.detect(image)
                seconds[name] += time.perf_counter() - started
                found[name] += match_detection(detections, points) is not None
        base = seconds[next(iter(SETTINGS))]
        print(f"{label}, {len(photos)} images, {args.threads} thread(s):")
        for name in detectors:
            print(f"  {name:48s} found {found[name]}/{len(photos)}  {1000 * seconds[name] / len(photos):6.1f} ms a photo  "
                  f"({base / seconds[name]:.2f}x the first row's speed)")


if __name__ == "__main__":
    main()
