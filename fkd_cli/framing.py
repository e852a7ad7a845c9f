"""The one preprocessing path: where the crop comes from, how it becomes a tensor, and how the
network's output goes back to original-image pixels. Train, evaluate, predict and export all use it.

A crop is always a square `box = (left, top, side)` in image pixels (integers, so that the pixel
grid of the crop is exact), resized to `input_size`. Both framings are squares:
- `frame` (the original project): rescale the shorter side to `frame_resize`, crop `input_size`;
  that is a square of side `min(H, W) * input_size / frame_resize`, centred (random in training).
- `face`: a square around a face box, `face_margin` times the longer side of the landmark box.
"""

from __future__ import annotations

import functools
import math
import platform
from dataclasses import asdict, dataclass, field

import torch

from .config import Config
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
    rule: DetectorRule = field(default_factory=DetectorRule)
    regions: dict[str, list[int]] | None = None  # named keypoint groups (None: the layout's default)
    # the calibration behind keypoint and landmark scores (confidence.Confidence as a dict), measured
    # when the model is trained (None: not calibrated, no scores)
    confidence: dict | None = None

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


def landmark_box(points: torch.Tensor) -> tuple[float, float, float, float]:
    """The bounding box (x0, y0, x1, y1) of one face's keypoints (K, 2)."""
    lo, hi = points.min(dim=0).values.tolist(), points.max(dim=0).values.tolist()
    return lo[0], lo[1], hi[0], hi[1]


def box_from_points(points: torch.Tensor, margin: float) -> tuple[int, int, int]:
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


def whole_image_box(width: int, height: int) -> tuple[int, int, int]:
    """The fallback when no face was detected: a square holding the whole image."""
    return square(width / 2, height / 2, max(width, height))


# ---- the two framings --------------------------------------------------------------------------

Box = tuple[int, int, int]  # left, top, side of a square crop, in image pixels


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

    def truth_box(self, width: int, height: int, points: torch.Tensor) -> Box:
        """The crop around annotated landmarks (training targets, `--boxes gt`)."""
        return box_from_points(points, self.pp.face_margin)

    def recrop_box(self, points: torch.Tensor) -> Box | None:
        """The crop around a prediction, to look again; None when the prediction is not finite."""
        return box_from_points(points, self.pp.face_margin) if bool(torch.isfinite(points).all()) else None

    def training_box(self, width: int, height: int, points: torch.Tensor, detected: Box | None, cfg: Config) -> Box:
        """A jittered training crop: mostly around the landmarks, a share from the detector's own
        calibrated box (what inference sees first), now and then the whole image (no face found)."""
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

    def truth_box(self, width: int, height: int, points: torch.Tensor) -> Box:
        return frame_box(width, height, self.pp)

    def recrop_box(self, points: torch.Tensor) -> Box | None:
        return None

    def training_box(self, width: int, height: int, points: torch.Tensor, detected: Box | None, cfg: Config) -> Box:
        """The original RandomCrop: anywhere inside the rescaled image."""
        left, top, side = frame_box(width, height, self.pp)
        left = int(torch.randint(0, max(1, width - side + 1), ()).item()) if width > side else left
        top = int(torch.randint(0, max(1, height - side + 1), ()).item()) if height > side else top
        return left, top, side


FRAMINGS = {"face": FaceFraming, "frame": FrameFraming}


# ---- crops and tensors ------------------------------------------------------------------------


def crop(image: torch.Tensor, box: tuple[int, int, int], size: int, keypoints: torch.Tensor | None = None):
    """Cut `box` out of a uint8 CHW image (zero padding outside it) and resize it to `size` square,
    antialiased bilinear; keypoints (K, 2), when given, are moved and scaled with the pixels.

    The same arithmetic as torchvision's `resized_crop` (a test holds them equal, bit for bit, so models
    trained through either agree), written with torch alone: importing torchvision cost every
    `fkd predict` 0.18 s before its first result.
    """
    left, top, side = box
    height, width = image.shape[-2:]
    right, bottom = left + side, top + side
    pixels = image[..., max(top, 0):bottom, max(left, 0):right]
    if left < 0 or top < 0 or right > width or bottom > height:
        padding = [max(min(right, 0) - left, 0), max(right - max(width, left), 0),
                   max(min(bottom, 0) - top, 0), max(bottom - max(height, top), 0)]
        pixels = torch.nn.functional.pad(pixels, padding, mode="constant", value=0)
    if side != size:
        pixels = _resize_square(pixels, size)
    if keypoints is None:
        return pixels, None
    moved = keypoints - torch.tensor([left, top], dtype=keypoints.dtype)
    if side != size:
        moved = moved.mul(torch.tensor([size / side, size / side])).to(keypoints.dtype)
    return pixels, moved


@functools.cache  # a fact about this machine, asked for every crop (every face, every training sample)
def _native_uint8_bilinear() -> bool:
    """Whether torch resizes uint8 images itself here (its AVX2/AVX-512 and ARM kernels); elsewhere the
    pixels go through float32 and are rounded back, as torchvision does."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def _resize_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    channels, height, width = pixels.shape
    batch = pixels.reshape(1, channels, height, width)
    if pixels.dtype == torch.uint8 and not _native_uint8_bilinear():
        out = torch.nn.functional.interpolate(batch.float(), size=[size, size], mode="bilinear",
                                              align_corners=False, antialias=True)
        return out.round_().to(torch.uint8).reshape(channels, size, size)
    out = torch.nn.functional.interpolate(batch, size=[size, size], mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(channels, size, size)


def to_input(crops: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """uint8 crops (N, 3, S, S) -> normalised float model input (N, C, S, S)."""
    x = crops.float() / 255.0
    if pp.channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    mean = torch.tensor(pp.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def crop_points_to_targets(points: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    return (points - pp.target_offset) / pp.target_scale


def outputs_to_crop_points(outputs: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """Raw network output (N, 2K) -> crop pixels (N, K, 2)."""
    return outputs.reshape(outputs.shape[0], -1, 2) * pp.target_scale + pp.target_offset


def crop_points_to_image(points: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The one mapping back to original-image pixels: crop pixels (N, K, 2) + boxes (N, 3) -> image pixels."""
    boxes = boxes.to(points.dtype)
    scale = (boxes[:, 2] / size).view(-1, 1, 1)
    return points * scale + boxes[:, None, :2]


def flip_crop_points(points: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """Undo a horizontal flip of the crop on predicted crop pixels: mirror x and swap left/right indices."""
    mirrored = points.clone()
    mirrored[..., 0] = pp.input_size - mirrored[..., 0]
    return mirrored[:, pp.flip_permutation]
