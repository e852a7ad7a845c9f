"""From an image to keypoints in its own pixels: detector, crop, model (any backend), mapping back.

`Predictor` is the single inference path: `fkd predict`, `fkd evaluate`, the trainer's validation
and the export parity check all go through `Predictor.keypoints_in_boxes`. It works on numpy arrays
(images uint8 HxWx3) and imports no torch: a model on PyTorch is one backend among others
(backends.py), and the default path (ONNX Runtime) starts without it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backends import bundled_model_path, device_type, load_backend
from .images import to_image_array
from .detect import Detection, build_detector
from .errors import FkdError
from .landmarks import default_regions
from .confidence import Confidence
from .geometry3d import head_pose
from .results import FaceResult, ImageResult
from .framing import (Box, Preprocess, box_sides, crop, crop_points_to_image, flip_crop_points, outputs_to_crop_points,
                      outputs_to_doubt, to_input)

WHOLE_IMAGE_EXTRA_STEPS = 2


class Predictor:
    """A model plus its preprocessing contract and detector."""

    def __init__(self, backend: Callable[[np.ndarray], np.ndarray], pp: Preprocess, source: str,
                 detector: str | None = None, info: dict | None = None, batch_size: int = 32,
                 conf: float = 0.0, max_faces: int | None = None, min_face: float | None = None):
        self.backend, self.source, self.info = backend, source, info or {}
        self._use_contract(pp)
        self.confidence = Confidence.from_dict(pp.confidence)
        # frame-framed models look at the whole frame: no detector is involved
        name = (detector or pp.rule.detector or "mtcnn") if self.framer.uses_detector else "none"
        self.detector = build_detector(name, min_face)
        self.notes: list[str] = []  # things a user should know about this combination, printed by the CLI
        if self.framer.uses_detector and name not in ("none", pp.rule.detector):
            # each detector draws its boxes differently: the calibrated rule belongs to one of them
            self.notes.append(
                f"{source} was calibrated for the {pp.rule.detector} detector; {name} boxes through its rule "
                f"may be off, and accuracy lower (measure a rule for {name}: fkd calibrate --detector {name})"
            )
        self.batch_size = batch_size
        self.conf = conf  # faces whose detector score is below this are dropped
        self.max_faces = max_faces  # keep only the N largest faces of an image (None: all)

    def configured(self, batch_size: int | None = None, flip_tta: bool | None = None,
                   refine_steps: int | None = None, conf: float | None = None,
                   max_faces: int | None = None, bias_correction: bool | None = None,
                   recrop_tta: bool | None = None) -> "Predictor":
        """A copy with other settings (the backend and detector are shared, never changed here)."""
        other = copy.copy(self)
        if batch_size is not None:
            other.batch_size = batch_size
        if conf is not None:
            if not 0 <= conf <= 1:
                raise FkdError(f"--conf {conf}: a face score threshold is in [0, 1]")
            other.conf = conf
        if max_faces is not None:
            if max_faces < 1:
                raise FkdError(f"--max-faces {max_faces}: must be at least 1")
            other.max_faces = max_faces
        if recrop_tta and not self.framer.uses_detector:
            raise FkdError(f"--recrop-tta: {self.source} looks at the whole frame, so there is no face crop to re-cut; "
                           f"leave --recrop-tta out")
        if flip_tta and self.pp.flip_permutation is None:
            raise FkdError("--flip-tta: this model has no flip permutation (its keypoints have no left/right pairs)")
        changes = {k: v for k, v in (("flip_tta", flip_tta), ("refine_steps", refine_steps), ("recrop_tta", recrop_tta))
                   if v is not None}
        if bias_correction is False:  # the network's own predictions, as measured before a correction
            changes["bias_correction"] = None
        if changes:
            other._use_contract(dataclasses.replace(self.pp, **changes))
        return other

    def _use_contract(self, pp: Preprocess) -> None:
        """The contract and what is derived from it once, not on every network call."""
        self.pp, self.framer = pp, pp.framer
        self._bias = None if pp.bias_correction is None else np.asarray(pp.bias_correction, dtype=np.float32)

    @property
    def num_keypoints(self) -> int:
        return self.pp.num_keypoints

    # ---- the model on crops ----

    def run_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Normalised crops (N, C, S, S) -> crop pixels (N, K, 2), with flip TTA if the model asks for it."""
        return self.run_inputs_with_spread(inputs)[0]

    def run_inputs_with_spread(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Crop pixels (N, K, 2) and the model's own doubt about each point (N, K) in crop sides, for
        free: its doubt head's expected error where it has one (doubt.py), else with flip TTA how far
        the crop's and the mirrored crop's predictions lie apart; None without either."""
        size = np.float32(self.pp.input_size)
        if not self.pp.flip_tta:
            outputs = self.backend(inputs)
            doubt = outputs_to_doubt(outputs, self.pp)
            return self._corrected(outputs_to_crop_points(outputs, self.pp)), None if doubt is None else doubt / size
        # one call on crops and mirrored crops together: half the per-call overhead of two calls
        outputs = self.backend(np.concatenate([inputs, inputs[..., ::-1]]))
        both, n = outputs_to_crop_points(outputs, self.pp), len(inputs)
        points, mirrored = both[:n], flip_crop_points(both[n:], self.pp)
        doubt = outputs_to_doubt(outputs, self.pp)
        if doubt is not None:  # the head's, as calibrated, whether or not flip TTA is on
            spread = (doubt[:n] + doubt[n:][:, self.pp.flip_permutation]) / (2 * size)
        else:
            spread = np.linalg.norm(points - mirrored, axis=-1) / size
        return self._corrected((points + mirrored) / 2), spread

    def _corrected(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels plus the model's measured bias correction (bias.py), where it has one."""
        return points if self._bias is None else points + self._bias

    def _keypoints_once(self, images: Sequence[np.ndarray], boxes: Sequence[Box]) -> tuple[np.ndarray, np.ndarray | None]:
        out, spreads = [], []
        size = self.pp.input_size
        for start in range(0, len(boxes), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(boxes)))
            crops = np.stack([crop(images[i], boxes[i], size)[0] for i in chunk])
            points, spread = self.run_inputs_with_spread(to_input(crops, self.pp))
            out.append(crop_points_to_image(points, np.array([boxes[i] for i in chunk]), size))
            spreads.append(spread)
        if not out:
            return np.zeros((0, self.num_keypoints, 2), np.float32), None
        return np.concatenate(out), (np.concatenate(spreads) if spreads[0] is not None else None)

    def keypoints_in_boxes(self, images: Sequence[np.ndarray], boxes: Sequence[Box],
                           whole_image: Sequence[bool] | None = None) -> np.ndarray:
        """Keypoints (N, K, 2) in image pixels for face i in `boxes[i]` of `images[i]`."""
        return self.keypoints_and_spread(images, boxes, whole_image)[0]

    def keypoints_and_spread(self, images: Sequence[np.ndarray], boxes: Sequence[Box],
                             whole_image: Sequence[bool] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints (N, K, 2) in image pixels and the flip-TTA spread (N, K) of the last pass (of the two
        averaged passes with `recrop_tta`)."""
        return self.keypoints_spread_and_boxes(images, boxes, whole_image)[:2]

    def keypoints_spread_and_boxes(self, images: Sequence[np.ndarray], boxes: Sequence[Box],
                                   whole_image: Sequence[bool] | None = None):
        """Keypoints (N, K, 2) in image pixels, the flip-TTA spread (N, K) of the last pass and the
        crop box each face's keypoints came from (its last pass).

        After the first pass the crop is re-cut around the predicted landmarks, exactly as in
        training (`refine_steps` times): the detector only has to be roughly right. Faces whose
        box is the whole image (nothing detected) get `WHOLE_IMAGE_EXTRA_STEPS` more re-cuts, to
        zoom in from the whole frame. With `recrop_tta`, each face then gets one more pass on the crop
        around its prediction, and the two predictions (and their doubts) are averaged; the crop box
        returned is the second one.
        """
        boxes = list(boxes)
        points, spread = self._keypoints_once(images, boxes)
        for _ in range(self.pp.refine_steps):
            boxes = self._recrop_boxes(points, boxes)
            points, spread = self._keypoints_once(images, boxes)
        coarse = [i for i, flag in enumerate(whole_image or []) if flag] if self.framer.uses_detector else []
        for _ in range(WHOLE_IMAGE_EXTRA_STEPS if coarse else 0):
            self._recut(images, points, spread, boxes, coarse)
        if self.pp.recrop_tta and self.framer.uses_detector:
            first, first_spread = points.copy(), None if spread is None else spread.copy()
            self._recut(images, points, spread, boxes, list(range(len(points))))
            points = (first + points) / 2
            spread = None if spread is None else (first_spread + spread) / 2
        return points, spread, boxes

    def _recut(self, images, points: np.ndarray, spread: np.ndarray | None, boxes: list, chosen: list[int]) -> None:
        """Re-crop the faces `chosen` around their predictions and predict them again, in place."""
        if not chosen:
            return
        recut = self._recrop_boxes(points[chosen], [boxes[i] for i in chosen])
        subset, subset_spread = self._keypoints_once([images[i] for i in chosen], recut)
        points[chosen] = subset
        for i, box in zip(chosen, recut):
            boxes[i] = box
        if spread is not None:
            spread[chosen] = subset_spread

    def scores(self, points: np.ndarray, spread: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Keypoint scores (N, K) and landmark scores (N,) in [0, 1] for predictions (N, K, 2) and
        their flip-TTA spread; (None, None) for a model without a confidence calibration."""
        if self.confidence is None:
            return None, None
        return self.confidence.scores(points, spread)

    def _recrop_boxes(self, points: np.ndarray, previous: Sequence[Box]) -> list[Box]:
        """Crops around the predicted landmarks; a face whose prediction is not finite (a diverged
        model) keeps its previous crop, so the NaN shows in the metrics instead of a crash."""
        return [self.framer.recrop_box(p) or box for p, box in zip(points, previous)]

    # ---- whole images ----

    def initial_box(self, image: np.ndarray, detection: Detection | None) -> Box:
        height, width = image.shape[:2]
        return self.framer.initial_box(width, height, None if detection is None else detection.box, self.detector.name)

    def detect(self, image: np.ndarray) -> list[Detection]:
        if not self.framer.uses_detector:  # the whole frame is the one "face"
            box = self.initial_box(image, None)
            width, height = box_sides(box)
            return [Detection((float(box[0]), float(box[1]), float(box[0] + width), float(box[1] + height)), None)]
        return self.detector.detect(image)

    def predict_faces(self, image: np.ndarray) -> list[FaceResult]:
        return self._faces_of([image])[0]

    def select(self, detections: list[Detection]) -> list[Detection]:
        """The faces a user asked for: score at least `conf`, then the `max_faces` largest."""
        kept = [d for d in detections if d.score is None or d.score >= self.conf]
        if self.max_faces is not None:
            kept = sorted(kept, key=lambda d: -d.area)[: self.max_faces]
        return kept

    def _faces_of(self, images: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """Detect in every image, then put every face of every image through the network together."""
        detections = [self.select(self.detect(image)) for image in images]
        owners = [i for i, found in enumerate(detections) for _ in found]
        flat = [d for found in detections for d in found]
        boxes = [self.initial_box(images[i], d) for i, d in zip(owners, flat)]
        points, spread = self.keypoints_and_spread([images[i] for i in owners], boxes)
        point_scores, face_scores = self.scores(points, spread)
        faces: list[list[FaceResult]] = [[] for _ in images]
        for n, (i, d) in enumerate(zip(owners, flat)):
            faces[i].append(FaceResult(d.box, d.score, points[n], None if point_scores is None else point_scores[n],
                                       None if face_scores is None else float(face_scores[n]),
                                       self.pose(points[n], images[i])))
        return faces

    def pose(self, points: np.ndarray, image: np.ndarray) -> dict | None:
        """Head pose of one face (68-point models; None otherwise), in `image`'s camera."""
        height, width = image.shape[:2]
        return head_pose(points, width, height) if self.num_keypoints == 68 else None

    @property
    def regions(self) -> dict[str, list[int]] | None:
        return self.pp.regions or default_regions(self.num_keypoints)

    def predict(self, images, bgr: bool = False):
        """Faces and keypoints of one image or a list of them.

        An image is a path, a PIL image, a numpy array (`HxWx3` uint8 RGB, or BGR with `bgr=True`;
        `HxW` grey) or a uint8 tensor (`3xHxW`). Returns an `ImageResult` (a list of them for a list):
        numpy `keypoints` (F, K, 2), `boxes`, `scores`, `keypoint_scores`, `regions`, and `to_dict()`.
        Lists are processed `batch_size` images at a time, their faces in shared network calls.
        """
        if isinstance(images, (list, tuple)):
            results = []
            for start in range(0, len(images), self.batch_size):
                results += self._predict_many(images[start:start + self.batch_size], bgr)
            return results
        return self._predict_many([images], bgr)[0]

    def _predict_many(self, images: Sequence, bgr: bool) -> list[ImageResult]:
        loaded = [to_image_array(image, bgr) for image in images]
        faces = self._faces_of([array for _, array in loaded])
        return [self.result(path, array, found) for (path, array), found in zip(loaded, faces)]

    def result(self, path, image: np.ndarray | None, faces: list[FaceResult], error: str | None = None) -> ImageResult:
        height, width = (int(v) for v in image.shape[:2]) if image is not None else (None, None)
        return ImageResult(path, width, height, faces, error, self.regions, num_keypoints=self.num_keypoints,
                           image=image)


BACKENDS = ("auto", "pytorch", "onnxruntime")


def load_predictor(path: str | Path | None = None, detector: str | None = None, device: str = "auto",
                   trust_code: bool = False, threads: int = 0, backend: str = "auto",
                   min_face: float | None = None) -> Predictor:
    """A predictor for a `.pth` checkpoint, an exported `.onnx`, or (with `trust_code`) a TorchScript
    `.pt`; None = the bundled model.

    `backend="auto"` runs a `.pth` on ONNX Runtime when the device is the CPU and ONNX Runtime is
    installed (through the checkpoint's ONNX twin, see twin.py), else on PyTorch. `min_face`: the
    smallest face (pixels of the photo) the detector looks for; None = its default (40 px for MTCNN).
    """
    if backend not in BACKENDS:
        raise FkdError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    if path is None:
        path = bundled_model_path()
        if not path.is_file():
            raise FkdError(f"the bundled model is missing from the installation ({path}); reinstall fkd or pass --model")
    path = Path(path)
    if path.suffix.lower() == ".pth" and backend != "pytorch" and device_type(device) == "cpu":
        from .twin import load_twin

        twin = load_twin(path, threads) if path.is_file() else None
        if twin is not None:
            runtime, pp, info = twin
            return Predictor(runtime, pp, str(path), detector, info, min_face=min_face)
        if backend == "onnxruntime":
            raise FkdError(f"{path}: no ONNX Runtime twin could be made (pip install onnx onnxruntime, or --backend pytorch)")
    runtime, pp, info = load_backend(path, device, trust_code, threads)
    return Predictor(runtime, pp, str(path), detector, info, min_face=min_face)
