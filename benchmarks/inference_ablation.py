"""Inference-time levers on one model, measured on a split: re-crop refinement steps, flip
test-time augmentation, and detector vs ground-truth boxes; with `--recrop-doubt T`, also a re-crop
pass only for the faces whose first pass doubts itself (mean doubt-head error above T crop sides),
which costs a second network call for those faces alone.

    python benchmarks/inference_ablation.py --model runs/fkd-best/model.pth --data-dir data
    python benchmarks/inference_ablation.py --data-dir data --split val --recrop-doubt 0.0145
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--recrop-doubt", type=float, default=None,
                        help="also: re-crop only faces whose first-pass mean doubt exceeds this (crop sides)")
    args = parser.parse_args()

    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.inference import load_predictor

    predictor = load_predictor(args.model, device="cpu")
    split = load_split(args.data_dir, args.split)
    images = ImageCache(split.paths).load_all()
    # detect once; every variant below reuses the same detections
    detections = [predictor.detect(images[i]) for i in range(len(images))]
    cached = iter(())

    def replay(image):  # rebinding `cached` below restarts the replay
        return next(cached)

    predictor.detect = replay
    print(f"model: {predictor.source} on {args.data_dir}/{args.split} ({len(images)} images)")
    print(f"{'boxes':<9} {'refine':>6} {'flip TTA':>8} {'NME %':>7} {'median %':>8} {'FR@8 %':>7} {'FR@10 %':>8} {'AUC@10':>7} {'missed':>6} {'s':>5}")

    def row(boxes, refine, flip, m, seconds):
        print(f"{boxes:<9} {refine:>6} {str(flip):>8} {100 * m['nme']:>7.2f} {100 * m['nme_median']:>8.2f} "
              f"{100 * m['fr_8']:>7.2f} {100 * m['fr_10']:>8.2f} {100 * m['auc_10']:>7.2f} {m['missed']:>6} {'-' if seconds is None else f'{seconds:.1f}':>5}")

    results = {}
    for boxes in ("detector", "gt"):
        for refine in (0, 1, 2):
            for flip in (False, True):
                variant = predictor.configured(refine_steps=refine, flip_tta=flip)
                cached = iter(detections)
                start = time.perf_counter()
                results[boxes, refine, flip] = evaluate(variant, images, split.keypoints, boxes)
                row(boxes, refine, flip, results[boxes, refine, flip].metrics, time.perf_counter() - start)
    if args.recrop_doubt is not None:
        conditional_recrop(results, args.recrop_doubt, predictor, images, split, row)


def conditional_recrop(results, threshold, predictor, images, split, row) -> None:
    """The re-crop pass for the doubtful faces only: the first pass's points where its mean doubt is
    at most `threshold`, the re-crop pass's points elsewhere (both passes as measured above)."""
    import torch

    from fkd_cli.metrics import summarize

    flip = predictor.pp.flip_tta
    first, second = results["detector", 0, flip], results["detector", 1, flip]
    if first.spread is None:
        raise SystemExit("--recrop-doubt: this model has no doubt head and no flip TTA, so no doubt to trigger on")
    doubt = first.spread.mean(dim=1)
    quantiles = [float(doubt.quantile(q)) for q in (0.5, 0.8, 0.9, 0.95)]
    print("first-pass mean doubt, quantiles 50/80/90/95%: " + " ".join(f"{q:.4f}" for q in quantiles))
    chosen = doubt > threshold
    points = first.predictions.clone()
    points[chosen] = second.predictions[chosen]
    sizes = [list(images[i].shape[:2]) for i in range(len(images))]
    m = summarize(points, split.keypoints, torch.tensor(sizes, dtype=torch.float32), predictor.pp.norm_points or [0, 1])
    m["missed"] = first.metrics["missed"]
    print(f"re-crop when the first pass's mean doubt > {threshold}: {int(chosen.sum())} of {len(chosen)} faces "
          f"({100 * float(chosen.float().mean()):.1f}%), faces over 10%: {int((m['fr_10'] * len(chosen)) + 0.5)}")
    row("detector", "if", flip, m, None)


if __name__ == "__main__":
    main()
