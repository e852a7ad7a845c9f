"""Do the confidence scores mean something? Measured on a split through the default path (detector,
calibrated crop, model with flip TTA):

- keypoint scores (flip-TTA spread and shape-model residual, see fkd_cli/confidence.py): mean point error (in % of the outer-eye-corner distance) by score decile: it must
  fall as the score rises;
- face landmark scores: mean NME by decile, and the AUROC of the score for telling faces over 10%
  (and 8%) NME from the rest (1.0 = perfect ranking, 0.5 = chance);
- the face detector's score of the face each image is annotated with: its minimum is the highest
  `--conf` that loses no face here;
- a frontal face (skimage's astronaut) against a profile one (skimage's camera: the cameraman);
- how a face's two signals are best weighted (the shape against the spread's weakest points): the
  AUROC of each weighting for the worst 10% and 3% of the faces (run it on `--split val` to choose one
  without looking at the test faces);
- crops with no face (noise, a grey wall, skimage's coffee, cat and rocket, the astronaut's background)
  and each test face's crop slid a whole side off it: a video track ends when its landmark score
  falls below `min_landmark_score` (0.1), so these must score below it and the faces' own crops above.

    python benchmarks/confidence.py --data-dir data
    python benchmarks/confidence.py --data-dir data --recrop-tta     # the scores of the accurate mode
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def auroc(scores, positive) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    import torch

    scores, positive = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(positive, dtype=torch.bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return float(greater + ties / 2)


def by_decile(scores, errors) -> list[tuple[float, float, float, int]]:
    """(lowest score, highest score, mean error, count) for each tenth of the items sorted by score."""
    import torch

    order = torch.argsort(torch.as_tensor(scores))
    rows = []
    for part in torch.tensor_split(order, 10):
        s, e = torch.as_tensor(scores)[part], torch.as_tensor(errors)[part]
        rows.append((float(s.min()), float(s.max()), float(e.float().mean()), len(part)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--recrop-tta", action="store_true", help="the accurate mode, as fkd predict --recrop-tta")
    args = parser.parse_args()

    import torch

    from fkd_cli import load_model
    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate

    predictor = load_model(args.model, device="cpu").configured(recrop_tta=args.recrop_tta or None)
    split = load_split(args.data_dir, args.split)
    images = ImageCache(split.paths)  # decoded once: the crops without faces below cut the same images
    result = evaluate(predictor, images, split.keypoints, "detector")
    point_scores, face_scores = predictor.scores(result.predictions, result.spread)  # what predict reports
    if point_scores is None:
        raise SystemExit(f"{predictor.source}: no confidence calibration (tools/calibrate_scores.py adds one)")
    a, b = predictor.pp.norm_points
    norm = (split.keypoints[:, a] - split.keypoints[:, b]).norm(dim=-1)
    errors = (result.predictions - split.keypoints).norm(dim=-1) / norm[:, None]  # (N, K), as NME divides
    print(f"model: {predictor.source} on {args.data_dir}/{args.split}: {result.count} faces, "
          f"NME {100 * result.metrics['nme']:.2f}%, missed {result.metrics['missed']}")
    print("\nkeypoint scores (every point of every face), by decile:")
    print(f"{'score from':>10} {'to':>6} {'mean error %':>13} {'points':>7}")
    for lo, hi, err, n in by_decile(point_scores.reshape(-1), errors.reshape(-1)):
        print(f"{lo:>10.3f} {hi:>6.3f} {100 * err:>13.2f} {n:>7}")
    print("\nface landmark scores, by decile:")
    print(f"{'score from':>10} {'to':>6} {'mean NME %':>11} {'faces':>6}")
    for lo, hi, err, n in by_decile(face_scores, result.nme):
        print(f"{lo:>10.3f} {hi:>6.3f} {100 * err:>11.2f} {n:>6}")
    for threshold in (0.10, 0.08):
        bad = result.nme > threshold
        print(f"AUROC of (1 - landmark score) for faces over {100 * threshold:.0f}% NME ({int(bad.sum())} of "
              f"{len(bad)}): {auroc(-face_scores, bad):.3f}")
    if result.spread is not None:
        weightings(predictor, result)
    found = result.face_scores[~torch.isnan(result.face_scores)]
    print(f"\ndetector score of the annotated face: min {float(found.min()):.4f}, 1st percentile "
          f"{float(torch.quantile(found, 0.01)):.4f}, median {float(found.median()):.4f} ({len(found)} found)")

    skimage_data = __import__("skimage.data", fromlist=["data"])
    print("\nfrontal vs profile (skimage photographs):")
    for name in ("astronaut", "camera"):
        image = getattr(skimage_data, name)()
        faces = predictor.predict(image)
        for i in range(len(faces)):
            print(f"  {name}: face {i} detector score {faces.scores[i]:.3f}, landmark score {faces.landmark_scores[i]:.3f}")
        if not len(faces):
            print(f"  {name}: no face found")
    crops_without_faces(predictor, result, images)


def weightings(predictor, result) -> None:
    """AUROC of a face's doubt for its worst faces, for shape weights from 1 (shape alone) to 0 (spread
    alone): the model's own calibration with only the weight changed."""
    import dataclasses

    import numpy as np

    from fkd_cli.confidence import WEAKEST_POINTS

    nme = result.nme.numpy()
    print(f"\na face's doubt, shape weight against its {WEAKEST_POINTS} weakest points' spread (stored: "
          f"{predictor.confidence.shape_weight:.3f}): AUROC for the worst faces")
    print(f"{'shape weight':>12} {'worst 10%':>10} {'worst 3%':>9}")
    for weight in (1, 2 / 3, 1 / 2, 1 / 3, 0):
        reweighted = dataclasses.replace(predictor.confidence, shape_weight=weight)
        face_scores = reweighted.scores(result.predictions.numpy(), result.spread.numpy())[1]
        row = [auroc(-face_scores, nme > np.quantile(nme, 1 - share)) for share in (0.10, 0.03)]
        print(f"{weight:>12.3f} {row[0]:>10.3f} {row[1]:>9.3f}")


def crops_without_faces(predictor, result, images) -> None:
    """Landmark scores of crops that hold no face, against the test faces' own crops."""
    import numpy as np

    skimage_data = __import__("skimage.data", fromlist=["data"])
    rng = np.random.default_rng(0)
    scenes = {"noise": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), "grey wall": np.full((300, 300, 3), 128, np.uint8),
              "coffee": skimage_data.coffee()[:300, :300], "cat": skimage_data.chelsea()[:300, :300],
              "rocket": skimage_data.rocket()[:300, :300], "astronaut's background": skimage_data.astronaut()[300:, 300:]}
    print("\nlandmark score of a crop with no face (the tracker ends a track below 0.1):")
    for name, image in scenes.items():
        points, spread = predictor.keypoints_and_spread([image], [(50, 50, 200)])
        print(f"  {name}: {float(predictor.scores(points, spread)[1][0]):.3f}")
    own = list(result.boxes)
    slid = [(left + side, top, side) for left, top, side in own]  # one side to the right: the face is gone
    for name, boxes in (("the test faces' own crops", own), ("those crops slid one side right", slid)):
        points, spread = predictor.keypoints_and_spread([images[i] for i in range(len(boxes))], boxes)
        scores = predictor.scores(points, spread)[1]
        print(f"  {name}: median {float(np.median(scores)):.3f}, under 0.1: {int((scores < 0.1).sum())} of {len(scores)}")


if __name__ == "__main__":
    main()
