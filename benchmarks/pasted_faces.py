"""Faces inside larger photos: paste each dev `test/` frame at several scales and places into a
larger canvas, then evaluate through the default path (the model's detector, calibrated crop, model).

    python benchmarks/pasted_faces.py --data-dir data [--model PATH] [--out pasted] [--recrop-tta]

Writes the pasted set in the official layout (`OUT/test/`, `OUT/test_frames_keypoints.csv`), so it
can also be fed to `fkd evaluate --data-dir OUT`. Prints, per scale and overall: faces found
(detector recall), NME, FR@10%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

SCALES = (1.0, 1.6, 2.4, 3.2)  # faces of about 60 to 200 px; see the README for smaller ones
CANVAS = (960, 720)


def make_canvas(rng: np.random.Generator) -> Image.Image:
    """A photo-like background without faces in it: smooth coloured noise at several scales."""
    canvas = np.zeros((CANVAS[1], CANVAS[0], 3), dtype=np.float32)
    for cells, weight in ((4, 0.6), (16, 0.3), (64, 0.1)):
        noise = rng.uniform(0, 255, (cells * CANVAS[1] // CANVAS[0] + 1, cells, 3)).astype(np.uint8)
        layer = Image.fromarray(noise).resize(CANVAS, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        canvas += weight * np.asarray(layer, dtype=np.float32)
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))


def build(data_dir: Path, out: Path, seed: int = 0) -> Path:
    from fkd_cli.data import read_split

    split = read_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    (out / "test").mkdir(parents=True, exist_ok=True)
    k = split.num_keypoints
    lines = ["," + ",".join(str(i) for i in range(2 * k))]
    for index, (path, points) in enumerate(zip(split.paths, split.keypoints)):
        label = SCALES[index % len(SCALES)]
        frame = Image.open(path).convert("RGB")
        # the whole frame must fit in the canvas, or its face could be cut off
        scale = min(label, 0.98 * CANVAS[0] / frame.width, 0.98 * CANVAS[1] / frame.height)
        size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
        frame = frame.resize(size, Image.Resampling.BICUBIC)
        canvas = make_canvas(rng)
        x0 = int(rng.integers(0, max(1, CANVAS[0] - size[0])))
        y0 = int(rng.integers(0, max(1, CANVAS[1] - size[1])))
        canvas.paste(frame, (x0, y0))
        moved = points.numpy() * [size[0] / path_size(path)[0], size[1] / path_size(path)[1]] + [x0, y0]
        name = f"pasted_{index:04d}_x{label}.png"
        canvas.save(out / "test" / name)
        lines.append(name + "," + ",".join(f"{v:.2f}" for v in moved.reshape(-1)))
    (out / "test_frames_keypoints.csv").write_text("\n".join(lines) + "\n")
    (out / "training").mkdir(exist_ok=True)
    (out / "training_frames_keypoints.csv").write_text(lines[0] + "\n")
    return out


def path_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("pasted"))
    parser.add_argument("--detector", default=None, help="default: the one the model was calibrated for")
    parser.add_argument("--recrop-tta", action="store_true", help="the accurate mode, as fkd predict --recrop-tta")
    args = parser.parse_args()

    from fkd_cli.data import ImageCache, read_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.inference import load_predictor
    from fkd_cli.metrics import failure_rate

    if not (args.out / "test_frames_keypoints.csv").exists():
        build(args.data_dir, args.out)
    split = read_split(args.out, "test")
    predictor = load_predictor(args.model, detector=args.detector, device="cpu").configured(recrop_tta=args.recrop_tta or None)
    result = evaluate(predictor, ImageCache(split.paths), split.keypoints, "detector")
    scales = torch.tensor([float(p.stem.split("_x")[1]) for p in split.paths])
    print(f"model: {predictor.source}, detector {predictor.detector.name}; {len(split.paths)} faces pasted into {CANVAS[0]}x{CANVAS[1]} photos")
    print(f"{'scale':>6} {'faces':>6} {'found':>6} {'NME %':>7} {'FR@10 %':>8} {'NME % (found)':>14} {'FR@10 % (found)':>16}")
    found_mask = ~result.missed_mask
    for scale in list(SCALES) + ["all"]:
        mask = torch.ones_like(scales, dtype=torch.bool) if scale == "all" else scales == scale
        nme, hit = result.nme[mask], result.nme[mask & found_mask]
        print(f"{scale:>6} {int(mask.sum()):>6} {len(hit):>6} {100 * nme.mean():>7.2f} {100 * failure_rate(nme, 0.10):>8.2f} "
              f"{100 * hit.mean():>14.2f} {100 * failure_rate(hit, 0.10):>16.2f}")
    found = len(split.paths) - result.metrics["missed"]
    print(f"faces found: {found}/{len(split.paths)} ({100 * found / len(split.paths):.1f}%)")
    scores = result.face_scores[~torch.isnan(result.face_scores)]
    if len(scores):  # the highest --conf that loses none of these faces
        print(f"detector score of the pasted faces: min {float(scores.min()):.4f}, median {float(scores.median()):.4f}")


if __name__ == "__main__":
    main()
