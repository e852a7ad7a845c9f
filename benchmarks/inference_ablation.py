"""Inference-time levers on one model, measured on a split: re-crop refinement steps, flip
test-time augmentation, and detector vs ground-truth boxes.

    python benchmarks/inference_ablation.py --model runs/fkd-best/model.pth --data-dir data
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
    print(f"{'boxes':<9} {'refine':>6} {'flip TTA':>8} {'NME %':>7} {'median %':>8} {'FR@10 %':>8} {'AUC@10':>7} {'missed':>6} {'s':>5}")
    for boxes in ("detector", "gt"):
        for refine in (0, 1, 2):
            for flip in (False, True):
                variant = predictor.configured(refine_steps=refine, flip_tta=flip)
                cached = iter(detections)
                start = time.perf_counter()
                m = evaluate(variant, images, split.keypoints, boxes).metrics
                print(f"{boxes:<9} {refine:>6} {str(flip):>8} {100 * m['nme']:>7.2f} {100 * m['nme_median']:>8.2f} "
                      f"{100 * m['fr_10']:>8.2f} {100 * m['auc_10']:>7.2f} {m['missed']:>6} {time.perf_counter() - start:>5.1f}")


if __name__ == "__main__":
    main()
