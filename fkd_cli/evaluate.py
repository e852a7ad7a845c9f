"""The one evaluation loop, used by `fkd evaluate` and by training's validation every epoch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import ImageCache
from .detect import match_detection
from .errors import FkdError
from .inference import Predictor
from .metrics import per_image_nme, summarize


@dataclass
class EvalResult:
    metrics: dict  # summarize()'s figures, plus "missed"
    nme: torch.Tensor  # (N,) per image
    missed_mask: torch.Tensor  # (N,) True where no detection held the face

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
    initial, all_images, missed = [], [], []
    for i in range(len(images)):
        image = images[i]
        all_images.append(image)
        height, width = image.shape[-2:]
        if boxes == "gt" or not framer.uses_detector:
            initial.append(framer.truth_box(width, height, keypoints[i]))
            missed.append(False)
        else:
            detection = match_detection(predictor.detect(image), keypoints[i])
            missed.append(detection is None)
            initial.append(predictor.initial_box(image, detection))
        if progress is not None:
            progress(i + 1, len(images))
    predictions = predictor.keypoints_in_boxes(all_images, initial, missed)
    sizes = torch.tensor([list(img.shape[-2:]) for img in all_images], dtype=torch.float32)
    norm = predictor.pp.norm_points or [0, 1]
    metrics = summarize(predictions, keypoints, sizes, norm)
    metrics["missed"] = sum(missed)
    return EvalResult(metrics, per_image_nme(predictions, keypoints, norm), torch.tensor(missed, dtype=torch.bool))
