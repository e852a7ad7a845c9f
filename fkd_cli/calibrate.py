"""Measure how a detector's boxes relate to the landmark boxes, so its boxes can be turned into the
crop the model was trained on. The rule is stored in the checkpoint; the detections themselves
are used as training crops, so the model learns from the boxes it will be given."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .detect import Detection, build_detector, match_detection
from .errors import FkdError
from .framing import DetectorRule, Preprocess, landmark_box

MIN_SAMPLES = 10


@dataclass
class Calibration:
    rule: DetectorRule
    detections: list[Detection | None]  # the matched detection of each image measured (None: missed)


def detect_matched(detector_name: str, images, keypoints: torch.Tensor, progress=None) -> list[Detection | None]:
    """Run the detector on every image and keep the detection that holds the annotated face."""
    detector = build_detector(detector_name)
    out = []
    for i in range(len(images)):
        out.append(match_detection(detector.detect(images[i]), keypoints[i]))
        if progress is not None:
            progress(i + 1, len(images))
    return out


def fit_rule(detector_name: str, detections: list[Detection | None], keypoints: torch.Tensor) -> DetectorRule:
    """Median offset and scale between matched detections and landmark boxes.

    With too few matches (e.g. synthetic images a detector cannot see) the identity rule is kept
    and `samples` says how many were measured.
    """
    dx, dy, scale = [], [], []
    for detection, points in zip(detections, keypoints):
        if detection is None:
            continue
        x0, y0, x1, y1 = detection.box
        width = x1 - x0
        lx0, ly0, lx1, ly1 = landmark_box(points)
        dx.append(((lx0 + lx1) / 2 - (x0 + x1) / 2) / width)
        dy.append(((ly0 + ly1) / 2 - (y0 + y1) / 2) / width)
        scale.append(max(lx1 - lx0, ly1 - ly0) / width)
    if len(scale) < MIN_SAMPLES:
        return DetectorRule(detector=detector_name, samples=len(scale))
    median = lambda values: float(torch.tensor(values).median())  # noqa: E731 - robust to the odd bad match
    return DetectorRule(detector=detector_name, dx=median(dx), dy=median(dy), scale=median(scale), samples=len(scale))


def calibrate(detector_name: str, images, keypoints: torch.Tensor, progress=None) -> Calibration:
    detections = detect_matched(detector_name, images, keypoints, progress)
    return Calibration(fit_rule(detector_name, detections, keypoints), detections)


def recalibrate(model: Path, data_dir: Path, out: Path, detector_name: str | None = None, bias: bool = False,
                progress=None, doubt: bool = False, decoded: tuple = ()) -> dict:
    """Refit a trained model's calibrations without retraining and write it to `out` (the network's
    weights are unchanged): with `detector_name`, the rule for that detector, measured on the
    `training/` split; with `bias`, its per-point bias correction (bias.py), measured on the validation
    split it was trained without; with `doubt`, a doubt head (doubt.py) fitted on its training faces and
    the confidence scales refitted on the validation split. `test/` is never looked at. Returns what
    was written into the contract (and the doubt head's fit report under "doubt_report"). `decoded`:
    ImageCaches already decoded (the trainer's), used for any split with exactly their files."""
    from .checkpoint import load_checkpoint, update_checkpoint
    from .data import ImageCache, read_split
    from .outputs import check_output_file

    if detector_name is None and not bias and not doubt:
        raise FkdError("nothing to calibrate: give --detector NAME (a detector rule), --bias (a bias correction) "
                       "and/or --doubt (a doubt head)")
    check_output_file(out, "--out")
    data = load_checkpoint(model)
    if not Preprocess.from_dict(data["preprocess"]).framer.uses_detector:
        raise FkdError(f"{model}: a whole-frame model uses no face detector; nothing to calibrate")
    num_keypoints = data["preprocess"]["num_keypoints"]
    changes: dict = {}
    decoded = list(decoded)  # the validation images, decoded once here, serve both the bias and the doubt head
    if detector_name is not None:
        split = read_split(data_dir, "training")
        split.check_keypoints(data_dir, num_keypoints)
        result = calibrate(detector_name, ImageCache(split.paths), split.keypoints, progress)
        if result.rule.samples < MIN_SAMPLES:
            raise FkdError(f"{detector_name} matched only {result.rule.samples} of {len(split.paths)} training faces "
                           f"(at least {MIN_SAMPLES} needed); {out} was not written")
        changes["rule"] = asdict(result.rule)
    if bias:
        changes["bias_correction"] = measure_bias_correction(model, data, data_dir, progress, decoded)
    extra = None
    if doubt:
        head, confidence, report = measure_doubt_head(model, data, data_dir, changes, progress, decoded)
        changes.update(doubt_head=True, confidence=confidence)
        extra = {"doubt_head": head}
    update_checkpoint(model, out, preprocess=changes,
                      config={"detector": detector_name} if detector_name is not None else None, extra=extra)
    if doubt:
        changes["doubt_report"] = report
    return changes


def images_of(split, decoded: list):
    """The split's decoded images: a cache from `decoded` holding exactly its files, else a new one,
    added to `decoded` so that the next measurement of the same split reuses it."""
    from .data import ImageCache

    for cache in decoded:
        if list(cache.paths) == list(split.paths):
            return cache
    decoded.append(ImageCache(split.paths))
    return decoded[-1]


def held_out_split(model: Path, cfg: dict, data_dir: Path, what: str, name: str = "val"):
    """The seeded split of training/ the model was trained on (`train`) or without (`val`)."""
    from .data import load_split

    if cfg.get("validation", "split") != "split" or not cfg.get("val_fraction", 0.1) > 0:
        raise FkdError(f"{model}: trained without a validation split (val_fraction 0 or validation: test), so it has no "
                       f"held-out faces of training/ to measure {what} on")
    return load_split(data_dir, name, cfg.get("val_fraction", 0.1), cfg.get("seed", 0))


def measure_doubt_head(model: Path, data: dict, data_dir: Path, changes: dict, progress=None,
                       decoded: list | None = None) -> tuple[dict, dict, dict]:
    """A doubt head for the checkpoint's network (fitted on augmented crops of its training faces,
    its strength chosen on the validation faces), and the confidence calibration refitted on the
    validation faces with it, as the trainer fits one: (head, confidence dict, fit report)."""
    from .backends import TorchBackend
    from .checkpoint import build_from_checkpoint
    from .config import config_from_dict
    from .confidence import fit_confidence, shape_weight_for
    from .data import KeypointDataset
    from .doubt import DisplacedCrops, WithDoubt, fit_doubt_head
    from .evaluate import evaluate
    from .inference import Predictor
    from .models import fuse_for_inference

    cfg = data.get("config", {})
    train, val = (held_out_split(model, cfg, data_dir, "a doubt head", name) for name in ("train", "val"))
    val.check_keypoints(data_dir, data["preprocess"]["num_keypoints"])
    pp = Preprocess.from_dict({**data["preprocess"], **changes, "doubt_head": False})
    net = build_from_checkpoint({**data, "preprocess": pp.to_dict(), "doubt_head": None})
    train_config = config_from_dict(cfg)
    decoded = [] if decoded is None else decoded
    train_images, val_images = images_of(train, decoded), images_of(val, decoded)
    # the augmented training crops come from torch's stream: seeded with the run's seed (the caller's
    # stream left as it was), the same network always gets the same head, as a seeded run gets the same network
    with torch.random.fork_rng():
        torch.manual_seed(train_config.seed)
        head, report = fit_doubt_head(net, KeypointDataset(train_images, train.keypoints, pp, train_config, train=True),
                                      KeypointDataset(val_images, val.keypoints, pp, train_config, train=False),
                                      pp.target_scale, DisplacedCrops(train_images, train.keypoints, pp, train_config.seed),
                                      progress=progress)
    with_head = Preprocess.from_dict({**pp.to_dict(), "doubt_head": True})
    predictor = Predictor(TorchBackend(fuse_for_inference(WithDoubt(net, head["weight"], head["bias"])), torch.device("cpu")),
                          with_head, str(model), detector="none")
    result = evaluate(predictor, val_images, val.keypoints, boxes="gt")
    confidence = fit_confidence(train.keypoints, result.predictions, result.spread, shape_weight_for(with_head.doubt_head))
    if confidence is None:
        raise FkdError(f"{data_dir}: too few faces to calibrate the confidence scores with a doubt head")
    return head, confidence.to_dict(), report


def measure_bias_correction(model: Path, data: dict, data_dir: Path, progress=None,
                            decoded: list | None = None) -> list[list[float]]:
    """The checkpoint's bias correction refitted on its own validation split (ground-truth boxes, as
    the trainer measures it), through the model's default inference path."""
    from .bias import MIN_FACES, fit_bias_correction
    from .evaluate import evaluate
    from .inference import load_predictor

    split = held_out_split(model, data.get("config", {}), data_dir, "a bias correction")
    split.check_keypoints(data_dir, data["preprocess"]["num_keypoints"])
    predictor = load_predictor(model)
    result = evaluate(predictor, images_of(split, [] if decoded is None else decoded), split.keypoints, boxes="gt",
                      progress=progress)
    correction = fit_bias_correction(result, split.keypoints, predictor.pp)
    if correction is None:
        raise FkdError(f"{data_dir}: fewer than {MIN_FACES} validation faces to measure a bias correction on")
    return correction
