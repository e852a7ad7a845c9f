"""Calibrate a checkpoint's confidence scores without retraining (for models trained before scores).

    python tools/calibrate_scores.py MODEL.pth --data-dir data

Exactly what `fkd train` does after each validation: the shape model is fitted on the landmarks of
the images the model was trained on (`training/` less the held-out split), and the scales on the
model's predictions (with flip TTA, ground-truth boxes) for the held-out split, the same seeded split
as the trainer's. Test images are never looked at. The weights are unchanged.
"""

import argparse
from pathlib import Path

from fkd_cli.checkpoint import update_checkpoint
from fkd_cli.confidence import fit_confidence
from fkd_cli.data import ImageCache, load_split
from fkd_cli.evaluate import evaluate
from fkd_cli.inference import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    predictor = load_predictor(args.model, device="cpu")
    cfg = predictor.info.get("config", {})
    fraction, seed = cfg.get("val_fraction", 0.1), cfg.get("seed", 0)
    train, val = (load_split(args.data_dir, name, fraction, seed) for name in ("train", "val"))
    result = evaluate(predictor, ImageCache(val.paths), val.keypoints, boxes="gt")
    confidence = fit_confidence(train.keypoints, result.predictions, result.spread)
    if confidence is None:
        raise SystemExit(f"{args.model}: too little data to calibrate scores")
    update_checkpoint(args.model, args.model, preprocess={"confidence": confidence.to_dict()})
    print(f"{args.model}: shape model from {len(train.paths)} training faces, scales from {len(val.paths)} "
          f"held-out faces (spread {confidence.spread_scale}, residual {confidence.residual_scale:.4f}, "
          f"shape {confidence.shape_scale:.2f})")


if __name__ == "__main__":
    main()
