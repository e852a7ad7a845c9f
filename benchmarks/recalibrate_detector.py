"""Calibrate a trained face-framed model for another face detector, without retraining.

    python benchmarks/recalibrate_detector.py MODEL.pth --detector mtcnn --data-dir data --out NEW.pth

The detector runs on every image of the `training/` split; the median offset and scale between its
boxes and the landmark boxes (the rule `fkd train` measures itself) replace the checkpoint's rule,
so the detector's boxes are turned into the crops the network was trained on. Test images are
never looked at. The bundled model was moved from the Haar chain to MTCNN this way (README, model card).
"""

import argparse
from pathlib import Path

from fkd_cli.calibrate import calibrate
from fkd_cli.checkpoint import load_checkpoint, save_checkpoint
from fkd_cli.data import ImageCache, read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = load_checkpoint(args.model)
    if data["preprocess"]["framing"] != "face":
        raise SystemExit(f"{args.model}: a {data['preprocess']['framing']}-framed model uses no detector")
    split = read_split(args.data_dir, "training")
    result = calibrate(args.detector, ImageCache(split.paths).load_all(), split.keypoints)
    rule = vars(result.rule)
    data["preprocess"]["rule"] = rule
    data["config"]["detector"] = args.detector
    payload = {k: v for k, v in data.items() if k not in ("format", "format_version", "fkd_version")}
    save_checkpoint(args.out, payload)
    print(f"{args.out}: {args.detector} rule from {rule['samples']} of {len(split.paths)} training faces: "
          f"dx={rule['dx']:+.3f} dy={rule['dy']:+.3f} scale={rule['scale']:.3f}")


if __name__ == "__main__":
    main()
