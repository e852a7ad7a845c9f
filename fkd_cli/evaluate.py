"""The one evaluation loop, used by `fkd evaluate` and by training's validation every epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import ImageCache
from .detect import match_detection
from .errors import FkdError
from .inference import Predictor
from .metrics import per_image_nme, per_image_region_nme, per_image_seed_mse, summarize


@dataclass
class EvalResult:
    metrics: dict  # summarize()'s figures, plus "missed"
    nme: torch.Tensor  # (N,) per image
    missed_mask: torch.Tensor  # (N,) True where no detection held the face
    predictions: torch.Tensor  # (N, K, 2) in image pixels
    spread: torch.Tensor | None = None  # (N, K) flip-TTA spread of each point (None without flip TTA)
    face_scores: torch.Tensor | None = None  # (N,) the matched detection's score (NaN: missed, gt boxes, no score)
    names: list[str] | None = None  # (N,) each image's file name, where the images came from files
    region_nme: dict[str, torch.Tensor] | None = None  # region name -> (N,) NME of that region's points
    boxes: list | None = None  # (N,) the crop box each prediction came from (its last pass)
    seed_mse: torch.Tensor | None = None  # (N,) each image's MSE in the original's units (metrics' mse_seed)

    @property
    def count(self) -> int:
        return len(self.nme)


def evaluate(predictor: Predictor, images: ImageCache, keypoints: torch.Tensor, boxes: str = "detector",
             progress=None) -> EvalResult:
    """The one evaluation loop: initial boxes (detector or ground truth), the predictor, the metrics.

    With `boxes="detector"` the detection that holds the annotated face is used; where there is
    none, the whole image is the box and the image counts as `missed`.
    """
    if boxes not in ("detector", "gt"):
        raise FkdError(f"--boxes {boxes}: choose detector or gt")
    framer = predictor.framer
    initial, all_images, missed, face_scores = [], [], [], []
    for i in range(len(images)):
        image = images[i]
        all_images.append(image)
        height, width = image.shape[:2]
        if boxes == "gt" or not framer.uses_detector:
            initial.append(framer.truth_box(width, height, keypoints[i]))
            missed.append(False)
            face_scores.append(float("nan"))
        else:
            detection = match_detection(predictor.detect(image), keypoints[i])
            missed.append(detection is None)
            face_scores.append(float("nan") if detection is None or detection.score is None else detection.score)
            initial.append(predictor.initial_box(image, detection))
        if progress is not None:
            progress(i + 1, len(images))
    predictions, spread, crop_boxes = predictor.keypoints_spread_and_boxes(all_images, initial, missed)
    predictions = torch.from_numpy(predictions)  # the metrics are torch's: training computes its losses there too
    spread = None if spread is None else torch.from_numpy(spread)
    sizes = torch.tensor([list(img.shape[:2]) for img in all_images], dtype=torch.float32)
    norm = predictor.pp.norm_points or [0, 1]
    # a squash model's own units are the original code's: its figures line up with that code's losses
    squash = predictor.pp.framing == "squash"
    metrics = summarize(predictions, keypoints, sizes, norm, squash=squash)
    metrics["missed"] = sum(missed)
    names = [Path(p).name for p in images.paths] if hasattr(images, "paths") else None
    return EvalResult(metrics, per_image_nme(predictions, keypoints, norm), torch.tensor(missed, dtype=torch.bool), predictions, spread,
                      torch.tensor(face_scores, dtype=torch.float32), names, per_image_region_nme(predictions, keypoints, norm),
                      crop_boxes, per_image_seed_mse(predictions, keypoints, sizes, squash))


def per_image_csv(result: EvalResult) -> str:
    """One row per image: file, NME, missed flag, detector score, per-region NME, MSE in the original's
    units (what --per-image writes)."""
    import pandas as pd

    columns = {"image": result.names or list(range(result.count)), "nme": result.nme.tolist(),
               "missed": result.missed_mask.tolist()}
    if result.face_scores is not None:
        columns["face_score"] = result.face_scores.tolist()
    for name, values in (result.region_nme or {}).items():
        columns[f"nme_{name}"] = values.tolist()
    if result.seed_mse is not None:
        columns["mse_seed"] = result.seed_mse.tolist()
    return pd.DataFrame(columns).to_csv(index=False, float_format="%.6g")


def evaluate_model(model: Path | None, data_dir: Path, split: str = "test", boxes: str = "detector",
                   detector: str | None = None, flip_tta: bool | None = None, device: str = "auto",
                   trust_code: bool = False, progress=None, notes=None, backend: str = "auto",
                   threads: int = 0, bias_correction: bool = True,
                   recrop_tta: bool | None = None) -> tuple[dict, EvalResult]:
    """`fkd evaluate` as a function: load a model, run the evaluation loop on a split of `data_dir`,
    and return the report (what the table and JSON show) with the per-image result."""
    from .data import load_split
    from .inference import load_predictor

    predictor = load_predictor(model, detector=detector, device=device, trust_code=trust_code, backend=backend,
                               threads=threads)
    predictor = predictor.configured(flip_tta=flip_tta, bias_correction=None if bias_correction else False,
                                     recrop_tta=recrop_tta)
    for note in predictor.notes:
        if notes is not None:
            notes(note)
    cfg = predictor.info.get("config", {})
    data = load_split(data_dir, split, cfg.get("val_fraction", 0.1), cfg.get("seed", 0))
    data.check_keypoints(data_dir, predictor.num_keypoints)
    result = evaluate(predictor, ImageCache(data.paths), data.keypoints, boxes, progress)
    report = {
        **result.metrics,
        "images": result.count,
        "model": predictor.source,
        "backend": getattr(predictor.backend, "name", "pytorch"),
        "split": split,
        "data_dir": str(data_dir),
        "boxes": boxes,
        "detector": predictor.detector.name if boxes == "detector" else None,
        "flip_tta": predictor.pp.flip_tta,
        "recrop_tta": predictor.pp.recrop_tta,
        "bias_correction": predictor.pp.bias_correction is not None,
    }
    return report, result
