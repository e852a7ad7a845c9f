"""Inference-time levers on one model, measured on a split: re-crop refinement steps, flip
test-time augmentation, re-crop test-time augmentation (the first pass averaged with one on the crop
around it: `fkd predict --recrop-tta`), and detector vs ground-truth boxes; with `--recrop-doubt T`, also a re-crop
pass only for the faces whose first pass doubts itself (mean doubt-head error above T crop sides),
which costs a second network call for those faces alone; with `--recrop-box T`, the same for the faces
whose first prediction moves the crop box (the re-crop box against the first one: the larger of the log
side ratio and the centre shift in first-box sides) by more than T. `--quick` runs only the two rows those
need (detector boxes, no re-crop and one re-crop, the model's own flip TTA setting).

    python benchmarks/inference_ablation.py --model runs/fkd-best/model.pth --data-dir data
    python benchmarks/inference_ablation.py --data-dir data --split val --recrop-doubt 0.0145
    python benchmarks/inference_ablation.py --data-dir data --split val --quick --recrop-box 0.1
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--recrop-doubt", type=float, default=None,
                        help="also: re-crop only faces whose first-pass mean doubt exceeds this (crop sides)")
    parser.add_argument("--recrop-box", type=float, default=None,
                        help="also: re-crop only faces whose first prediction moves the crop box by more than this")
    parser.add_argument("--quick", action="store_true", help="only the rows the conditional re-crops need")
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
    print(f"{'boxes':<9} {'refine':>6} {'flip TTA':>8} {'re-crop TTA':>11} {'NME %':>7} {'median %':>8} {'FR@8 %':>7} {'FR@10 %':>8} {'AUC@10':>7} {'missed':>6} {'s':>5}")

    def row(boxes, refine, flip, m, seconds, recrop_tta=False):
        print(f"{boxes:<9} {refine:>6} {str(flip):>8} {str(recrop_tta):>11} {100 * m['nme']:>7.2f} {100 * m['nme_median']:>8.2f} "
              f"{100 * m['fr_8']:>7.2f} {100 * m['fr_10']:>8.2f} {100 * m['auc_10']:>7.2f} {m['missed']:>6} {'-' if seconds is None else f'{seconds:.1f}':>5}")

    results = {}
    flips = (predictor.pp.flip_tta,) if args.quick else (False, True)
    for boxes in ("detector",) if args.quick else ("detector", "gt"):
        for refine in (0, 1) if args.quick else (0, 1, 2):
            for flip in flips:
                variant = predictor.configured(refine_steps=refine, flip_tta=flip)
                cached = iter(detections)
                start = time.perf_counter()
                results[boxes, refine, flip] = evaluate(variant, images, split.keypoints, boxes)
                row(boxes, refine, flip, results[boxes, refine, flip].metrics, time.perf_counter() - start)
        # the accurate mode: the first pass averaged with one on the crop around it (two passes a face)
        for flip in flips:
            cached = iter(detections)
            start = time.perf_counter()
            averaged = evaluate(predictor.configured(refine_steps=0, flip_tta=flip, recrop_tta=True), images,
                                split.keypoints, boxes)
            row(boxes, 0, flip, averaged.metrics, time.perf_counter() - start, recrop_tta=True)
    flip = predictor.pp.flip_tta
    first, second = results["detector", 0, flip], results["detector", 1, flip]
    if args.recrop_doubt is not None:
        if first.spread is None:
            raise SystemExit("--recrop-doubt: this model has no doubt head and no flip TTA, so no doubt to trigger on")
        conditional_recrop(first, second, first.spread.mean(dim=1), "the first pass's mean doubt",
                           args.recrop_doubt, predictor, images, split, row)
    if args.recrop_box is not None:
        import torch

        moved = torch.tensor([box_shift(a, b) for a, b in zip(first.boxes, second.boxes)])
        conditional_recrop(first, second, moved, "the first prediction's box shift", args.recrop_box,
                           predictor, images, split, row)


def box_shift(first, second) -> float:
    """How far the square crop box `second` (left, top, side) moves from `first`: the larger of the log
    ratio of their sides and the distance between their centres in `first`'s sides (0: the same box).
    A first prediction that moves its own crop box a lot might say the box it was cut from was off."""
    dx = (second[0] + second[2] / 2) - (first[0] + first[2] / 2)
    dy = (second[1] + second[2] / 2) - (first[1] + first[2] / 2)
    return max(abs(math.log(second[2] / first[2])), math.hypot(dx, dy) / first[2])


def conditional_recrop(first, second, signal, label, threshold, predictor, images, split, row) -> None:
    """The re-crop pass for the faces whose `signal` (N,) exceeds `threshold` only: the first pass's
    points elsewhere, the re-crop pass's points there (both passes as measured above)."""
    import torch

    from fkd_cli.metrics import per_image_nme, summarize

    quantiles = [float(signal.quantile(q)) for q in (0.5, 0.8, 0.9, 0.95, 0.98)]
    print(f"{label}, quantiles 50/80/90/95/98%: " + " ".join(f"{q:.4f}" for q in quantiles))
    chosen = signal > threshold
    points = first.predictions.clone()
    points[chosen] = second.predictions[chosen]
    sizes = [list(images[i].shape[:2]) for i in range(len(images))]
    norm = predictor.pp.norm_points or [0, 1]
    m = summarize(points, split.keypoints, torch.tensor(sizes, dtype=torch.float32), norm)
    m["missed"] = first.metrics["missed"]
    print(f"re-crop when {label} > {threshold}: {int(chosen.sum())} of {len(chosen)} faces "
          f"({100 * float(chosen.float().mean()):.1f}%), faces over 10%: {int((m['fr_10'] * len(chosen)) + 0.5)}")
    row("detector", "if", predictor.pp.flip_tta, m, None)
    # what the second look did to the faces it was given (the rows above round to 0.01 points)
    change = 100 * (per_image_nme(points, split.keypoints, norm) - first.nme)[chosen]
    print(f"  NME {100 * m['nme']:.3f}% against {100 * first.metrics['nme']:.3f}% with one pass; on the "
          f"{int(chosen.sum())} faces looked at twice: {int((change < 0).sum())} better, {int((change > 0).sum())} worse, "
          f"mean change {float(change.mean()) if len(change) else 0:+.3f} points")


if __name__ == "__main__":
    main()
