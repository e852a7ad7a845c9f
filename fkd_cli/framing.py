"""The one preprocessing path: where the crop comes from, how it becomes a tensor, and how the
network's output goes back to original-image pixels. Train, evaluate, predict and export all use it.

A crop is a `box` in image pixels (integers, so that the pixel grid of the crop is exact), resized to
`input_size` square: a square `(left, top, side)` for two framings, a rectangle `(left, top, width,
height)` for the third:
- `face`: a square around a face box, `face_margin` times the longer side of the landmark box.
- `frame` (the Udacity template): rescale the shorter side to `frame_resize`, crop `input_size`;
  that is a square of side `min(H, W) * input_size / frame_resize`, centred (random in training).
- `squash` (the original project's own code): the whole image, resized to `input_size` square
  whatever its shape (aspect not kept), in training as in use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from .config import Config
from .errors import FkdError
from .landmarks import IBUG68_FLIP, IBUG68_NORM_POINTS, default_regions, validate_permutation


@dataclass
class DetectorRule:
    """Maps a detector's box to the centre and size of the landmark box it usually holds.

    Measured on the training set (see `calibrate.py`): centre = box centre + (dx, dy) x box width,
    landmark-box side = scale x box width.
    """

    detector: str = "none"
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    samples: int = 0  # how many training faces the rule was measured on


@dataclass
class Preprocess:
    """The preprocessing contract: everything needed to turn an image into model input and back."""

    num_keypoints: int
    input_size: int
    channels: int
    mean: list[float]
    std: list[float]
    framing: str
    face_margin: float
    frame_resize: int
    target_offset: float
    target_scale: float
    flip_permutation: list[int] | None
    norm_points: list[int] | None
    refine_steps: int = 1
    flip_tta: bool = False
    # one more pass a face on the crop around its prediction, averaged with that prediction: two looks
    # from two crops, as flip TTA averages two from a crop and its mirror (README, Accuracy)
    recrop_tta: bool = False
    rule: DetectorRule = field(default_factory=DetectorRule)
    regions: dict[str, list[int]] | None = None  # named keypoint groups (None: the layout's default)
    # the calibration behind keypoint and landmark scores (confidence.Confidence as a dict), measured
    # when the model is trained (None: not calibrated, no scores)
    confidence: dict | None = None
    # (K, 2) crop pixels added to every prediction: the network's mean error on held-out faces, which
    # flip augmentation or flip TTA leave (bias.py), measured when the model is trained (None: none)
    bias_correction: list[list[float]] | None = None
    # the network also outputs K log errors after its 2K coordinates (doubt.py), added by `fkd calibrate --doubt`
    doubt_head: bool = False

    def __post_init__(self):
        if self.bias_correction is not None:
            try:
                values = np.asarray(self.bias_correction, dtype=np.float64)
            except (TypeError, ValueError):
                values = np.full(1, np.nan)
            if values.shape != (self.num_keypoints, 2) or not np.isfinite(values).all():
                raise ValueError(f"bias_correction must be {self.num_keypoints} pairs of finite numbers")

    @classmethod
    def from_config(cls, cfg: Config, num_keypoints: int) -> "Preprocess":
        perm = cfg.flip_permutation
        if perm is None and num_keypoints == 68:
            perm = list(IBUG68_FLIP)
        if perm is not None:
            validate_permutation(perm, num_keypoints)
        norm = cfg.norm_points
        if norm is None and num_keypoints == 68:
            norm = list(IBUG68_NORM_POINTS)
        half = cfg.input_size / 2
        return cls(
            num_keypoints=num_keypoints,
            input_size=cfg.input_size,
            channels=cfg.channels,
            mean=list(cfg.mean),
            std=list(cfg.std),
            framing=cfg.framing,
            face_margin=cfg.face_margin,
            frame_resize=cfg.frame_resize,
            target_offset=half if cfg.target_offset is None else cfg.target_offset,
            target_scale=half if cfg.target_scale is None else cfg.target_scale,
            flip_permutation=perm,
            norm_points=norm,
            refine_steps=cfg.refine_steps if cfg.framing == "face" else 0,
            flip_tta=cfg.flip_tta and perm is not None,
            recrop_tta=cfg.recrop_tta and cfg.framing == "face",
            rule=DetectorRule(detector=cfg.detector),
            regions=cfg.regions or default_regions(num_keypoints),
        )

    @property
    def framer(self) -> "FaceFraming | FrameFraming":
        """The framing as an object: the few box decisions that depend on it, in one place."""
        return FRAMINGS[self.framing](self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocess":
        data = dict(data)
        data["rule"] = DetectorRule(**data.get("rule", {}))
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- boxes ---------------------------------------------------------------------------------


def square(cx: float, cy: float, side: float) -> tuple[int, int, int]:
    """An integer (left, top, side) square centred on (cx, cy)."""
    side_i = max(2, int(round(side)))
    return int(math.floor(cx - side_i / 2 + 0.5)), int(math.floor(cy - side_i / 2 + 0.5)), side_i


def landmark_box(points) -> tuple[float, float, float, float]:
    """The bounding box (x0, y0, x1, y1) of one face's keypoints (K, 2; a numpy array or a CPU tensor)."""
    points = np.asarray(points)
    lo, hi = points.min(axis=0).tolist(), points.max(axis=0).tolist()
    return lo[0], lo[1], hi[0], hi[1]


def box_from_points(points, margin: float) -> tuple[int, int, int]:
    """Face framing from landmarks: the square around their bounding box, grown by `margin`."""
    x0, y0, x1, y1 = landmark_box(points)
    return square((x0 + x1) / 2, (y0 + y1) / 2, margin * max(x1 - x0, y1 - y0))


def box_from_detection(xyxy: tuple[float, float, float, float], pp: Preprocess) -> tuple[int, int, int]:
    """Face framing from a detector box, through the calibrated rule."""
    x0, y0, x1, y1 = xyxy
    width = x1 - x0
    cx = (x0 + x1) / 2 + pp.rule.dx * width
    cy = (y0 + y1) / 2 + pp.rule.dy * width
    return square(cx, cy, pp.face_margin * pp.rule.scale * width)


def frame_box(width: int, height: int, pp: Preprocess) -> tuple[int, int, int]:
    """Frame framing: the centre crop of the image rescaled so that its shorter side is `frame_resize`."""
    side = min(width, height) * pp.input_size / pp.frame_resize
    return square(width / 2, height / 2, side)


def box_sides(box) -> tuple[int, int]:
    """(width, height) of a box: a square `(left, top, side)` or a rectangle `(left, top, width, height)`."""
    return (box[2], box[3]) if len(box) == 4 else (box[2], box[2])


def whole_image_box(width: int, height: int) -> tuple[int, int, int]:
    """The fallback when no face was detected: a square holding the whole image."""
    return square(width / 2, height / 2, max(width, height))


# ---- the three framings ------------------------------------------------------------------------

Box = tuple[int, ...]  # (left, top, side) of a square crop, or (left, top, width, height), in image pixels


class FaceFraming:
    """A square around the face: from a detector box (through the calibrated rule), from landmarks
    (ground truth, or the previous prediction when re-cropping), or the whole image as a last resort."""

    uses_detector = True

    def __init__(self, pp: Preprocess):
        self.pp = pp

    def initial_box(self, width: int, height: int, detection_box=None, detector: str = "mtcnn") -> Box:
        """The first crop: the detection through the rule; the whole image when nothing was found,
        or when the "detection" is the whole image (`--detector none`: the image is a face crop)."""
        if detection_box is None:
            return whole_image_box(width, height)
        if detector == "none":
            x0, y0, x1, y1 = detection_box
            return whole_image_box(int(x1 - x0), int(y1 - y0))
        return box_from_detection(detection_box, self.pp)

    def truth_box(self, width: int, height: int, points) -> Box:
        """The crop around annotated landmarks (training targets, `--boxes gt`)."""
        return box_from_points(points, self.pp.face_margin)

    def recrop_box(self, points) -> Box | None:
        """The crop around a prediction, to look again; None when the prediction is not finite."""
        return box_from_points(points, self.pp.face_margin) if bool(np.isfinite(np.asarray(points)).all()) else None

    def training_box(self, width: int, height: int, points, detected: Box | None, cfg: Config) -> Box:
        """A jittered training crop: mostly around the landmarks, a share from the detector's own
        calibrated box (what inference sees first), now and then the whole image (no face found)."""
        import torch  # training only: its seeded random stream makes runs repeatable

        left, top, side = self.truth_box(width, height, points)
        scale_jitter, shift_jitter = cfg.scale_jitter, cfg.shift_jitter
        draw = float(torch.rand(()))
        if draw < cfg.whole_image_prob:
            left, top, side = whole_image_box(width, height)
        elif detected is not None and draw < cfg.whole_image_prob + cfg.detector_box_prob:
            (left, top, side), scale_jitter, shift_jitter = detected, scale_jitter / 3, shift_jitter / 3
        # jitter: neither a detector's box nor our own landmarks' box is ever exactly the true one
        u = torch.rand(3) * 2 - 1
        scale = math.exp(float(u[0]) * math.log1p(scale_jitter))
        cx = left + side / 2 + float(u[1]) * shift_jitter * side
        cy = top + side / 2 + float(u[2]) * shift_jitter * side
        return square(cx, cy, side * scale)


class FrameFraming:
    """The original project's whole-frame crop: no detector, no landmarks, no re-crop."""

    uses_detector = False

    def __init__(self, pp: Preprocess):
        self.pp = pp

    def initial_box(self, width: int, height: int, detection_box=None, detector: str = "none") -> Box:
        return frame_box(width, height, self.pp)

    def truth_box(self, width: int, height: int, points) -> Box:
        return frame_box(width, height, self.pp)

    def recrop_box(self, points) -> Box | None:
        return None

    def training_box(self, width: int, height: int, points, detected: Box | None, cfg: Config) -> Box:
        """The original RandomCrop: anywhere inside the rescaled image."""
        import torch  # training only, as above

        left, top, side = frame_box(width, height, self.pp)
        left = int(torch.randint(0, max(1, width - side + 1), ()).item()) if width > side else left
        top = int(torch.randint(0, max(1, height - side + 1), ()).item()) if height > side else top
        return left, top, side


class SquashFraming:
    """The original project's own pipeline (its `Rescale((224, 224))`): the whole image, resized to the
    input square whatever its shape, with no crop and no randomness in training either."""

    uses_detector = False

    def __init__(self, pp: Preprocess):
        self.pp = pp

    def initial_box(self, width: int, height: int, detection_box=None, detector: str = "none") -> Box:
        return 0, 0, width, height

    def truth_box(self, width: int, height: int, points) -> Box:
        return 0, 0, width, height

    def recrop_box(self, points) -> Box | None:
        return None

    def training_box(self, width: int, height: int, points, detected: Box | None, cfg: Config) -> Box:
        return 0, 0, width, height


FRAMINGS = {"face": FaceFraming, "frame": FrameFraming, "squash": SquashFraming}


# ---- crops and tensors ------------------------------------------------------------------------


def crop(image: np.ndarray, box: Box, size: int, keypoints: np.ndarray | None = None):
    """Cut `box` out of a uint8 HxWx3 image (zero padding outside it) and resize it to `size` square,
    antialiased bilinear; keypoints (K, 2), when given, are moved and scaled with the pixels.

    Pillow does the resize: its antialiased bilinear filter is the one torchvision's `resized_crop`
    (and torch's uint8 `interpolate(antialias=True)`) reproduces, equal on 99.9% of pixels and never more
    than 2 levels apart (a test holds them to that), so models trained through either agree; and
    predicting need not import torch (README, Speed).
    """
    left, top = box[:2]
    box_width, box_height = box_sides(box)
    height, width = image.shape[:2]
    right, bottom = left + box_width, top + box_height
    if left < 0 or top < 0 or right > width or bottom > height:
        pixels = np.zeros((box_height, box_width, image.shape[2]), np.uint8)
        y0, y1, x0, x1 = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
        if y1 > y0 and x1 > x0:
            pixels[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    else:
        pixels = image[top:bottom, left:right]
    if (box_width, box_height) != (size, size):
        pixels = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((size, size), Image.Resampling.BILINEAR))
    if keypoints is None:
        return pixels, None
    keypoints = np.asarray(keypoints, dtype=np.float32)
    moved = keypoints - np.array([left, top], dtype=np.float32)
    if (box_width, box_height) != (size, size):
        moved = (moved * np.array([size / box_width, size / box_height], dtype=np.float32)).astype(np.float32)
    return pixels, moved


DOUBT_EPS = 0.1  # crop pixels added to a point's error before the doubt head's log: no point is infinitely certain
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL and torchvision convert RGB to grey


def to_input(crops: np.ndarray, pp: Preprocess) -> np.ndarray:
    """uint8 crops (N, S, S, 3) -> normalised float32 model input (N, C, S, S)."""
    x = crops.astype(np.float32) / np.float32(255.0)
    if pp.channels == 1:
        x = (np.float32(GREY_WEIGHTS[0]) * x[..., 0:1] + np.float32(GREY_WEIGHTS[1]) * x[..., 1:2]
             + np.float32(GREY_WEIGHTS[2]) * x[..., 2:3])
    x = (x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def crop_points_to_targets(points, pp: Preprocess):
    """Crop pixels -> the network's target units (numpy arrays or tensors: training computes on tensors)."""
    return (points - pp.target_offset) / pp.target_scale


def outputs_to_crop_points(outputs: np.ndarray, pp: Preprocess) -> np.ndarray:
    """Raw network output (N, 2K, or 3K with a doubt head) -> crop pixels (N, K, 2)."""
    coordinates = outputs[:, : 2 * pp.num_keypoints]
    return coordinates.reshape(outputs.shape[0], -1, 2) * np.float32(pp.target_scale) + np.float32(pp.target_offset)


def outputs_to_doubt(outputs: np.ndarray, pp: Preprocess) -> np.ndarray | None:
    """The doubt head's expected error of each point (N, K) in crop pixels; None for a model without one."""
    if not pp.doubt_head:
        return None
    if outputs.shape[1] != 3 * pp.num_keypoints:
        raise FkdError(f"the model gives {outputs.shape[1]} numbers a face, but its contract promises a doubt head "
                       f"({3 * pp.num_keypoints}: 2 coordinates and a log error a point); the file is damaged")
    log_errors = outputs[:, 2 * pp.num_keypoints:].astype(np.float32)
    return np.maximum(np.exp(log_errors) - np.float32(DOUBT_EPS), np.float32(0))


def crop_points_to_image(points: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """The one mapping back to original-image pixels: crop pixels (N, K, 2) + boxes (N, 3 or 4) -> image pixels."""
    boxes = np.asarray(boxes, dtype=points.dtype)
    boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.size else 3)
    sides = boxes[:, 2:4] if boxes.shape[1] == 4 else boxes[:, 2:3]  # (width, height), or one side for both
    return points * (sides / size)[:, None, :] + boxes[:, None, :2]


def flip_crop_points(points: np.ndarray, pp: Preprocess) -> np.ndarray:
    """Undo a horizontal flip of the crop on predicted crop pixels: mirror x and swap left/right indices."""
    mirrored = points.copy()
    mirrored[..., 0] = pp.input_size - mirrored[..., 0]
    return mirrored[:, pp.flip_permutation]
