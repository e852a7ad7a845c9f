"""Calibrate a checkpoint's confidence scores without retraining (for models trained before scores).

    python tools/calibrate_scores.py MODEL.pth --data-dir data
    python tools/calibrate_scores.py MODEL.pth --scales-from TWIN.pth

Exactly what `fkd train` does after each validation: the shape model is fitted on the landmarks of
the images the model was trained on (`training/` less the held-out split), and the scales on the
model's predictions (with flip TTA, ground-truth boxes) for the held-out split, the same seeded split
as the trainer's. Test images are never looked at. The weights are unchanged.

A model trained on all of `training/` (`val_fraction=0`) has no held-out face left to measure its
scales on: `--scales-from` copies the calibration of its twin, the same recipe trained with a
held-out split, measured on faces that twin never saw (how doubtful the recipe is on a new face).
"""

import argparse
from pathlib import Path

from fkd_cli.checkpoint import load_checkpoint, update_checkpoint
from fkd_cli.confidence import fit_confidence, shape_weight_for
from fkd_cli.data import ImageCache, load_split
from fkd_cli.evaluate import evaluate
from fkd_cli.inference import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--scales-from", type=Path, help="copy the calibration of this twin checkpoint instead")
    args = parser.parse_args()
    if args.scales_from is not None:
        confidence = load_checkpoint(args.scales_from)["preprocess"].get("confidence")
        if confidence is None:
            raise SystemExit(f"{args.scales_from}: has no confidence calibration to copy")
        update_checkpoint(args.model, args.model, preprocess={"confidence": confidence})
        print(f"{args.model}: confidence calibration copied from {args.scales_from}")
        return
    predictor = load_predictor(args.model, device="cpu")
    cfg = predictor.info.get("config", {})
    fraction, seed = cfg.get("val_fraction", 0.1), cfg.get("seed", 0)
    if fraction == 0:
        raise SystemExit(f"{args.model}: trained on all of training/, so no held-out face is left to measure "
                         f"scales on; use --scales-from its twin trained with a held-out split")
    train, val = (load_split(args.data_dir, name, fraction, seed) for name in ("train", "val"))
    result = evaluate(predictor, ImageCache(val.paths), val.keypoints, boxes="gt")
    confidence = fit_confidence(train.keypoints, result.predictions, result.spread, shape_weight_for(predictor.pp.doubt_head))
    if confidence is None:
        raise SystemExit(f"{args.model}: too little data to calibrate scores")
    update_checkpoint(args.model, args.model, preprocess={"confidence": confidence.to_dict()})
    print(f"{args.model}: shape model from {len(train.paths)} training faces, scales from {len(val.paths)} "
          f"held-out faces (spread {confidence.spread_scale}, residual {confidence.residual_scale:.4f}, "
          f"shape {confidence.shape_scale:.2f})")


if __name__ == "__main__":
    main()
