"""An ensemble of models (the mean of their outputs) through `fkd evaluate`'s path: how good a
distillation teacher is, and what it would cost at inference (one network call a model, twice with
flip TTA). The first model's preprocessing, detector rule and inference settings are used.

    python benchmarks/ensemble.py runs/a/model.pth runs/b/model.pth --data-dir data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fkd_cli.data import ImageCache, load_split
from fkd_cli.distill import contract_difference
from fkd_cli.evaluate import evaluate
from fkd_cli.inference import Predictor, load_predictor


class MeanBackend:
    """Raw outputs averaged over several backends that share one preprocessing contract."""

    name = "ensemble"

    def __init__(self, backends):
        self.backends = backends

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.stack([backend(x) for backend in self.backends]).mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    predictors = [load_predictor(m, device="cpu") for m in args.models]
    first = predictors[0]
    for other in predictors[1:]:
        difference = contract_difference(other.pp, first.pp)
        if difference is not None:
            raise SystemExit(f"{other.source}: {difference} in {first.source}; an ensemble needs the same crops")
    ensemble = Predictor(MeanBackend([p.backend for p in predictors]), first.pp, "ensemble",
                         detector=first.detector.name, info=first.info)
    data = load_split(args.data_dir, args.split)
    images = ImageCache(data.paths)
    print(f"{'model':40s} {'NME %':>6s} {'median':>6s} {'FR@8':>6s} {'FR@10':>6s} {'AUC@10':>6s} missed")
    for predictor in [*predictors, ensemble]:
        m = evaluate(predictor, images, data.keypoints, "detector").metrics
        print(f"{str(predictor.source)[-40:]:40s} {100 * m['nme']:6.2f} {100 * m['nme_median']:6.2f} {100 * m['fr_8']:6.2f} "
              f"{100 * m['fr_10']:6.2f} {100 * m['auc_10']:6.1f} {m['missed']:6d}")
    calls = len(predictors) * (2 if first.pp.flip_tta else 1)
    print(f"ensemble of {len(predictors)}: {calls} network calls a face (one model: {calls // len(predictors)})")


if __name__ == "__main__":
    main()
