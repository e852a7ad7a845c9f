"""What a prediction returns: per face a box, scores and keypoints; per image numpy arrays of all
faces (the shapes face-alignment and face_recognition users expect) and the JSON schema's entry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FaceResult:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float | None  # the detector's confidence in [0, 1] (None: no detector ran)
    keypoints: np.ndarray  # (K, 2) original-image pixels
    keypoint_scores: np.ndarray | None = None  # (K,) in [0, 1]; None for an uncalibrated model
    landmark_score: float | None = None  # the face's landmarks as a whole, in [0, 1] (see confidence.py)
    pose: dict | None = None  # {"yaw", "pitch", "roll"} in degrees (68-point models; see geometry3d.py)

    def to_dict(self) -> dict:
        entry = {
            "box": [round(float(v), 2) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints.tolist()],
        }
        if self.keypoint_scores is not None:
            entry["landmark_score"] = round(self.landmark_score, 4)
            entry["keypoint_scores"] = [round(float(v), 3) for v in self.keypoint_scores.tolist()]
        if self.pose is not None:
            entry["pose"] = self.pose
        return entry


@dataclass
class ImageResult:
    """One image's faces. Arrays are numpy: `keypoints` (F, K, 2), `boxes` (F, 4), `scores` (F,),
    `keypoint_scores` (F, K), `landmark_scores` (F,); NaN where a value does not exist."""

    path: str | None
    width: int | None
    height: int | None
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    region_map: dict[str, list[int]] | None = None
    annotated: str | None = None  # the annotated copy `fkd predict` wrote, if any
    num_keypoints: int = 68  # K, so that an image without faces still gives (0, K, 2) arrays
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded image (H, W, 3), for aligned()

    @property
    def keypoints(self) -> np.ndarray:
        if not self.faces:
            return np.zeros((0, self.num_keypoints, 2), np.float32)
        return np.stack([f.keypoints for f in self.faces]).astype(np.float32)

    @property
    def boxes(self) -> np.ndarray:
        return np.array([f.box for f in self.faces], dtype=np.float32).reshape(-1, 4)

    @property
    def scores(self) -> np.ndarray:
        return np.array([math.nan if f.score is None else f.score for f in self.faces], dtype=np.float32)

    @property
    def keypoint_scores(self) -> np.ndarray:
        rows = [f.keypoint_scores if f.keypoint_scores is not None else np.full(len(f.keypoints), np.nan)
                for f in self.faces]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.num_keypoints), np.float32)

    @property
    def landmark_scores(self) -> np.ndarray:
        return np.array([math.nan if f.landmark_score is None else f.landmark_score for f in self.faces], dtype=np.float32)

    @property
    def regions(self) -> list[dict[str, np.ndarray]]:
        """Per face, each named region's points: `result.regions[0]["left_eye"]` is a (6, 2) array."""
        names = self.region_map or {}
        return [{name: f.keypoints[idx] for name, idx in names.items()} for f in self.faces]

    @property
    def poses(self) -> np.ndarray:
        """(F, 3) yaw, pitch, roll in degrees (NaN where there is none)."""
        rows = [[f.pose[k] for k in ("yaw", "pitch", "roll")] if f.pose else [math.nan] * 3 for f in self.faces]
        return np.array(rows, dtype=np.float32).reshape(-1, 3)

    def aligned(self, index: int, size: int = 112) -> np.ndarray:
        """Face `index` warped onto the standard 5-point template, `size` x `size` x 3 uint8 RGB (112:
        what ArcFace-style recognition models expect)."""
        from .geometry3d import aligned_crop

        if self.image is None or self.num_keypoints != 68:
            raise ValueError("aligned crops need the image and a 68-point model")
        return aligned_crop(self.image, self.faces[index].keypoints, size)

    def to_dict(self) -> dict:
        """Exactly the `images[]` entry of `fkd predict --json`."""
        entry = {"path": self.path, "width": self.width, "height": self.height,
                 "faces": [f.to_dict() for f in self.faces], "error": self.error}
        if self.annotated is not None:
            entry["annotated"] = self.annotated
        return entry

    def __len__(self) -> int:
        return len(self.faces)
