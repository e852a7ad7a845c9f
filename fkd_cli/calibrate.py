"""Measure how a detector's boxes relate to the landmark boxes, so its boxes can be turned into the
crop the model was trained on. The rule is stored in the checkpoint."""

from __future__ import annotations

import torch

from .detect import build_detector, match_detection
from .framing import DetectorRule

MIN_SAMPLES = 10


def calibrate_rule(detector_name: str, images, keypoints: torch.Tensor, max_images: int = 300, seed: int = 0) -> DetectorRule:
    """Median offset and scale between matched detections and landmark boxes on (a sample of) the training set.

    With too few matches (e.g. synthetic images a detector cannot see) the identity rule is kept
    and `samples` says how many were measured.
    """
    detector = build_detector(detector_name)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images].tolist()
    dx, dy, scale = [], [], []
    for i in order:
        points = keypoints[i]
        detection = match_detection(detector.detect(images[i]), points)
        if detection is None:
            continue
        x0, y0, x1, y1 = detection.box
        width = x1 - x0
        lo, hi = points.min(dim=0).values, points.max(dim=0).values
        centre = (lo + hi) / 2
        dx.append((float(centre[0]) - (x0 + x1) / 2) / width)
        dy.append((float(centre[1]) - (y0 + y1) / 2) / width)
        scale.append(float((hi - lo).max()) / width)
    if len(scale) < MIN_SAMPLES:
        return DetectorRule(detector=detector_name, samples=len(scale))
    median = lambda values: float(torch.tensor(values).median())  # noqa: E731 - robust to the odd bad match
    return DetectorRule(detector=detector_name, dx=median(dx), dy=median(dy), scale=median(scale), samples=len(scale))
