"""Calibrate a checkpoint's keypoint scores without retraining (models trained before scores existed).

    python tools/calibrate_scores.py MODEL.pth --data-dir data

Runs the model with flip TTA on the validation split that `fkd train` held out of `training/` (the
same seeded split, ground-truth boxes, as the trainer's validation), and stores each point's 90th
percentile of flip-TTA spread in the preprocessing contract, as `fkd train` does itself every epoch.
Test images are never looked at.
"""

import argparse
from pathlib import Path

from fkd_cli.calibrate import score_scale
from fkd_cli.checkpoint import update_checkpoint
from fkd_cli.data import ImageCache, load_split
from fkd_cli.evaluate import evaluate
from fkd_cli.inference import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    predictor = load_predictor(args.model, device="cpu").configured(flip_tta=True)
    cfg = predictor.info.get("config", {})
    split = load_split(args.data_dir, "val", cfg.get("val_fraction", 0.1), cfg.get("seed", 0))
    result = evaluate(predictor, ImageCache(split.paths), split.keypoints, boxes="gt")
    scale = score_scale(result.spread)
    update_checkpoint(args.model, args.model, preprocess={"score_scale": scale})
    print(f"{args.model}: keypoint scores calibrated on {len(split.paths)} held-out faces "
          f"(spread scale median {sorted(scale)[len(scale) // 2]:.4f} crop sides)")


if __name__ == "__main__":
    main()
