"""From an image to keypoints in its own pixels: detector, crop, model (any backend), mapping back.

`Predictor` is the single inference path: `fkd predict`, `fkd evaluate`, the trainer's validation
and the export parity check all go through `Predictor.keypoints_in_boxes`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .backends import bundled_model_path, load_backend
from .data import decode_image, read_image
from .detect import Detection, build_detector
from .errors import FkdError
from .framing import Box, Preprocess, crop, crop_points_to_image, flip_crop_points, outputs_to_crop_points, to_input

WHOLE_IMAGE_EXTRA_STEPS = 2


@dataclass
class FaceResult:
    box: tuple[float, float, float, float]
    score: float | None
    keypoints: torch.Tensor  # (K, 2) original-image pixels


class Predictor:
    """A model plus its preprocessing contract and detector."""

    def __init__(self, backend: Callable[[torch.Tensor], torch.Tensor], pp: Preprocess, source: str,
                 detector: str | None = None, info: dict | None = None, batch_size: int = 32):
        self.backend, self.pp, self.source, self.info = backend, pp, source, info or {}
        self.framer = pp.framer
        # frame-framed models look at the whole frame: no detector is involved
        name = (detector or pp.rule.detector or "mtcnn") if self.framer.uses_detector else "none"
        self.detector = build_detector(name)
        self.notes: list[str] = []  # things a user should know about this combination, printed by the CLI
        if self.framer.uses_detector and name not in ("none", pp.rule.detector):
            # each detector draws its boxes differently: the calibrated rule belongs to one of them
            self.notes.append(
                f"{source} was calibrated for the {pp.rule.detector} detector; {name} boxes through its rule "
                f"may be off, and accuracy lower (measure a rule for {name}: fkd calibrate --detector {name})"
            )
        self.batch_size = batch_size

    def configured(self, batch_size: int | None = None, flip_tta: bool | None = None,
                   refine_steps: int | None = None) -> "Predictor":
        """A copy with other settings (the backend and detector are shared, never changed here)."""
        other = copy.copy(self)
        if batch_size is not None:
            other.batch_size = batch_size
        if flip_tta and self.pp.flip_permutation is None:
            raise FkdError("--flip-tta: this model has no flip permutation (its keypoints have no left/right pairs)")
        changes = {k: v for k, v in (("flip_tta", flip_tta), ("refine_steps", refine_steps)) if v is not None}
        if changes:
            other.pp = dataclasses.replace(self.pp, **changes)
            other.framer = other.pp.framer
        return other

    @property
    def num_keypoints(self) -> int:
        return self.pp.num_keypoints

    # ---- the model on crops ----

    def run_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised crops (N, C, S, S) -> crop pixels (N, K, 2), with flip TTA if the model asks for it."""
        if not self.pp.flip_tta:
            return outputs_to_crop_points(self.backend(inputs), self.pp)
        # one call on crops and mirrored crops together: half the per-call overhead of two calls
        both = outputs_to_crop_points(self.backend(torch.cat([inputs, inputs.flip(-1)])), self.pp)
        points, mirrored = both[: len(inputs)], both[len(inputs):]
        return (points + flip_crop_points(mirrored, self.pp)) / 2

    def _keypoints_once(self, images: Sequence[torch.Tensor], boxes: Sequence[Box]) -> torch.Tensor:
        out = []
        size = self.pp.input_size
        for start in range(0, len(boxes), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(boxes)))
            crops = torch.stack([crop(images[i], boxes[i], size)[0].as_subclass(torch.Tensor) for i in chunk])
            points = self.run_inputs(to_input(crops, self.pp))
            out.append(crop_points_to_image(points, torch.tensor([boxes[i] for i in chunk]), size))
        return torch.cat(out) if out else torch.zeros(0, self.num_keypoints, 2)

    def keypoints_in_boxes(self, images: Sequence[torch.Tensor], boxes: Sequence[Box],
                           whole_image: Sequence[bool] | None = None) -> torch.Tensor:
        """Keypoints (N, K, 2) in image pixels for face i in `boxes[i]` of `images[i]`.

        After the first pass the crop is re-cut around the predicted landmarks, exactly as in
        training (`refine_steps` times): the detector only has to be roughly right. Faces whose
        box is the whole image (nothing detected) get `WHOLE_IMAGE_EXTRA_STEPS` more re-cuts, to
        zoom in from the whole frame.
        """
        points = self._keypoints_once(images, boxes)
        for _ in range(self.pp.refine_steps):
            boxes = self._recrop_boxes(points, boxes)
            points = self._keypoints_once(images, boxes)
        coarse = [i for i, flag in enumerate(whole_image or []) if flag] if self.framer.uses_detector else []
        for _ in range(WHOLE_IMAGE_EXTRA_STEPS if coarse else 0):
            subset = self._keypoints_once([images[i] for i in coarse],
                                          self._recrop_boxes(points[coarse], [boxes[i] for i in coarse]))
            points[coarse] = subset
        return points

    def _recrop_boxes(self, points: torch.Tensor, previous: Sequence[Box]) -> list[Box]:
        """Crops around the predicted landmarks; a face whose prediction is not finite (a diverged
        model) keeps its previous crop, so the NaN shows in the metrics instead of a crash."""
        return [self.framer.recrop_box(p) or box for p, box in zip(points, previous)]

    # ---- whole images ----

    def initial_box(self, image: torch.Tensor, detection: Detection | None) -> Box:
        height, width = image.shape[-2:]
        return self.framer.initial_box(width, height, None if detection is None else detection.box, self.detector.name)

    def detect(self, image: torch.Tensor) -> list[Detection]:
        if not self.framer.uses_detector:  # the whole frame is the one "face"
            left, top, side = self.initial_box(image, None)
            return [Detection((float(left), float(top), float(left + side), float(top + side)), None)]
        return self.detector.detect(image)

    def predict_faces(self, image: torch.Tensor) -> list[FaceResult]:
        detections = self.detect(image)
        if not detections:
            return []
        boxes = [self.initial_box(image, d) for d in detections]
        points = self.keypoints_in_boxes([image] * len(boxes), boxes)
        return [FaceResult(d.box, d.score, p) for d, p in zip(detections, points)]

    def predict(self, image) -> dict:
        """One image (path, PIL image, or uint8 CHW tensor) -> the JSON schema's image entry."""
        if isinstance(image, (str, Path)):
            path, tensor = str(image), read_image(Path(image))
        elif isinstance(image, torch.Tensor):
            path, tensor = None, image
        else:
            path, tensor = None, decode_image(image)
        faces = self.predict_faces(tensor)
        return image_entry(path, tensor, faces, None)


def image_entry(path, image: torch.Tensor | None, faces: list[FaceResult], error: str | None) -> dict:
    """The `images[]` item of the predict JSON schema (coordinates in upright original pixels)."""
    height, width = (image.shape[-2:] if image is not None else (None, None))
    return {
        "path": path,
        "width": int(width) if width is not None else None,
        "height": int(height) if height is not None else None,
        "faces": [
            {
                "box": [round(float(v), 2) for v in f.box],
                "score": None if f.score is None else round(float(f.score), 4),
                "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in f.keypoints.tolist()],
            }
            for f in faces
        ],
        "error": error,
    }


def load_predictor(path: str | Path | None = None, detector: str | None = None, device: str = "auto",
                   trust_code: bool = False, threads: int = 0) -> Predictor:
    """A predictor for a `.pth` checkpoint, an exported `.onnx`, or (with `trust_code`) a TorchScript
    `.pt`; None = the bundled model."""
    if path is None:
        path = bundled_model_path()
        if not path.is_file():
            raise FkdError(f"the bundled model is missing from the installation ({path}); reinstall fkd or pass --model")
    backend, pp, info = load_backend(Path(path), device, trust_code, threads)
    return Predictor(backend, pp, str(path), detector, info)
