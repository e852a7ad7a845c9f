"""Face detectors behind one small interface: `detect(image) -> [Detection]` in image pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import FkdError
from .framing import landmark_box

# the face size (pixels of the photo) MTCNN's search starts from unless told (`fkd predict --min-face`)
DEFAULT_MIN_FACE = 40.0


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float | None  # confidence in [0, 1]; None when no detector ran (`--detector none`)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...  # image: uint8 RGB (H, W, 3)


def working_scale(height: int, width: int, min_side: int, max_side: int) -> float:
    """How much to resize an image before detection: small frames up to `min_side`, large photos
    down to `max_side` on their longest side, anything between as it is."""
    longest = max(height, width)
    if longest < min_side:
        return min_side / longest
    if longest > max_side:
        return max_side / longest
    return 1.0


class HaarDetector:
    """OpenCV's Haar cascades, run on a working copy scaled to a sensible size.

    Small frames are enlarged (the cascades miss faces under ~30 px) and very large photos shrunk
    (speed); boxes come back in original pixels either way. Where the frontal cascade finds
    nothing, a looser frontal cascade and then the profile cascade (both ways round) get a try:
    on the dev test split this more than halves the faces missed.
    """

    name = "haar"
    # (cascade file, minNeighbors, also run on the mirrored image)
    CASCADES = (
        ("haarcascade_frontalface_default.xml", 5, False),
        ("haarcascade_frontalface_alt2.xml", 3, False),
        ("haarcascade_profileface.xml", 3, True),
    )

    def __init__(self, min_side: int = 400, max_side: int = 1280, min_face_fraction: float = 0.04,
                 min_face_px: float = 0.0):
        try:
            import cv2
        except ImportError:  # pragma: no cover - a hard dependency, but say what to do if it is gone
            raise FkdError("the haar detector needs opencv-python-headless<5: pip install 'opencv-python-headless<5'") from None
        self._cv2 = cv2
        self._cascades = []
        for filename, neighbours, mirrored in self.CASCADES:
            path = cv2.data.haarcascades + filename
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise FkdError(f"OpenCV's Haar cascade could not be loaded from {path} (OpenCV 5 wheels ship none: pin <5)")
            self._cascades.append((cascade, neighbours, mirrored))
        self.min_side, self.max_side, self.min_face_fraction = min_side, max_side, min_face_fraction
        self.min_face_px = min_face_px

    def _run(self, cascade, grey, neighbours: int, min_face: int):
        boxes, _, weights = cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_face, min_face), outputRejectLevels=True
        )
        return list(zip(np.asarray(boxes).reshape(-1, 4).tolist(), np.asarray(weights).reshape(-1).tolist()))

    def detect(self, image: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        height, width = image.shape[:2]
        scale = working_scale(height, width, self.min_side, self.max_side)
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        grey = cv2.equalizeHist(grey)
        min_face = max(24, int(self.min_face_fraction * max(grey.shape)), round(self.min_face_px * scale))
        found = []
        for cascade, neighbours, mirrored in self._cascades:
            found = self._run(cascade, grey, neighbours, min_face)
            if mirrored:
                grey_width = grey.shape[1]
                flipped = self._run(cascade, np.ascontiguousarray(grey[:, ::-1]), neighbours, min_face)
                found += [([grey_width - x - w, y, w, h], weight) for (x, y, w, h), weight in flipped]
            if found:
                break
        # the cascades' raw level weights (about -1 to 11) squashed into [0, 1], as every detector's score
        out = [
            Detection((x / scale, y / scale, (x + w) / scale, (y + h) / scale), 1.0 / (1.0 + math.exp(-float(weight))))
            for (x, y, w, h), weight in found
        ]
        out.sort(key=lambda d: -(d.score or 0.0))
        return out


class MTCNNDetector:
    """MTCNN (the default): frontal to near-profile faces; its search starts at `min_face_px` (40 px of
    the photo; 20 when asked) and often finds faces somewhat smaller.

    On the dev test frames and on the same faces pasted into larger photos it found every face
    (see the README), where the Haar chain missed 1% and 4%. Large photos are shrunk to `max_side`
    first (the P-Net pyramid grows with the image); small frames are not enlarged (`min_side` 0):
    the pyramid starts from the smallest face looked for, so enlarging first only cost time (2x on
    the dev frames, every face still found). Faces smaller than `min_face_px` of the photo's pixels
    or `min_face_fraction` of the longest side are not looked for: from 40 px rather than 20 the
    pyramid is 4x smaller, 1.6-2x faster a photo with every benchmark face still found and the same
    accuracy (README). (A 5% fraction was as fast on 960x720 photos but lost a 70-px face in a 2400-px
    group photo: faces that small are what group photos hold, so the floor is in pixels.)
    """

    name = "mtcnn"

    def __init__(self, min_side: int = 0, max_side: int = 1280, min_face_fraction: float = 0.025,
                 min_face_px: float = DEFAULT_MIN_FACE):
        from .mtcnn import MTCNN

        self._mtcnn = MTCNN()
        self.min_side, self.max_side, self.min_face_fraction = min_side, max_side, min_face_fraction
        self.min_face_px = min_face_px

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        scale = working_scale(height, width, self.min_side, self.max_side)
        work = np.asarray(image, dtype=np.float32)
        if scale != 1.0:
            import cv2

            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = cv2.resize(work, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # the floor is in the photo's own pixels (a shrunk photo's small faces stay findable);
        # 20 px in the working image is as small as the P-Net's 12-px window usefully goes
        min_face = max(20.0, self.min_face_px * scale, self.min_face_fraction * max(work.shape[:2]))
        boxes, scores = self._mtcnn(work, min_face=min_face)
        out = [Detection(tuple(float(v) / scale for v in box), float(score)) for box, score in zip(boxes.tolist(), scores.tolist())]
        out.sort(key=lambda d: -(d.score or 0.0))
        return out


class WholeImage:
    """`--detector none`: the image is already a face crop; the whole image is the face box."""

    name = "none"

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        return [Detection((0.0, 0.0, float(width), float(height)), None)]


DETECTORS = {"mtcnn": MTCNNDetector, "haar": HaarDetector, "none": WholeImage}


def build_detector(name: str, min_face: float | None = None) -> Detector:
    """A detector by name; `min_face` (pixels of the photo) overrides its smallest face looked for."""
    if name not in DETECTORS:
        raise FkdError(f"unknown detector '{name}'; choose one of {', '.join(DETECTORS)}")
    if min_face is None or name == "none":
        return DETECTORS[name]()
    if min_face < 20:
        raise FkdError(f"--min-face {min_face:g} (min_face in Python): the detectors look for faces from 20 px; give 20 or more")
    return DETECTORS[name](min_face_px=min_face)


def match_detection(detections: list[Detection], points) -> Detection | None:
    """The detection that holds the annotated face: the one whose box contains the most landmark
    area (landmark-box coverage), if it covers at least half of it; the standard evaluation protocol."""
    target = landmark_box(points)
    area = max(1e-6, (target[2] - target[0]) * (target[3] - target[1]))
    best, best_cover = None, 0.5
    for det in detections:
        b = det.box
        ix = max(0.0, min(b[2], target[2]) - max(b[0], target[0]))
        iy = max(0.0, min(b[3], target[3]) - max(b[1], target[1]))
        cover = ix * iy / area
        # a box far larger than the face (covering it trivially) is not a match either
        if cover > best_cover and (b[2] - b[0]) < 4 * (target[2] - target[0] + 1):
            best, best_cover = det, cover
    return best
