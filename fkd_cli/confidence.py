"""Confidence that means something, at no extra network cost. Two signals, both measured to rank errors
(benchmarks/confidence.py):

- spread: the model's own doubt about each point: with a doubt head (doubt.py) the error it expects
  there, else with flip TTA how far its predictions on the crop and the mirrored crop lie apart;
- shape: how plausible the predicted shape is as a face, under a point-distribution model (Cootes et
  al. 1995) fitted on the training landmarks: the Mahalanobis distance of the Procrustes-aligned
  shape in the main modes, and each point's distance from the model's reconstruction. Profile,
  occluded and misplaced faces come out as unusual shapes.

Each signal is divided by its 90th percentile on held-out faces, so a value of 1 is "as doubtful as
one held-out case in ten"; a score is 0.5 ** (the signals' mean; for a face a weighted mean, the
shape's weight `shape_weight`), so such a point or face scores 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

QUANTILE = 0.9  # held-out faces' quantile that maps to a score of 0.5
MODES = 16  # shape modes kept (fewer for small keypoint sets or data sets)
WEAKEST_POINTS = 5  # a face's spread is that of its least certain points
# the shape's share of a face's doubt beside its weakest points' spread: with flip spread 2/3 (a turned
# face's spread can be low: the shape is what sees it); with a doubt head 1/3 (it sees turned faces
# itself, and ranked the worst validation faces better than the shape: README, Confidence)
FLIP_SHAPE_WEIGHT = 2 / 3
DOUBT_HEAD_SHAPE_WEIGHT = 1 / 3


def shape_weight_for(doubt_head: bool) -> float:
    """The shape's weight for a model whose spread comes from a doubt head, or else from flip TTA."""
    return DOUBT_HEAD_SHAPE_WEIGHT if doubt_head else FLIP_SHAPE_WEIGHT


def procrustes(shapes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each shape (N, K, 2) moved, scaled and rotated onto `reference` (K, 2) by least squares."""
    shapes, reference = np.asarray(shapes, np.float64), np.asarray(reference, np.float64)
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    target = reference - reference.mean(axis=0)
    z = centred[..., 0] + 1j * centred[..., 1]
    r = target[:, 0] + 1j * target[:, 1]
    # the best similarity is one complex factor a = <z, r> / <z, z>
    a = (z.conj() * r).sum(axis=1) / np.maximum((np.abs(z) ** 2).sum(axis=1), 1e-12)
    aligned = a[:, None] * z
    return np.stack([aligned.real, aligned.imag], axis=-1).astype(np.float32)


@dataclass
class Confidence:
    """The calibration a model carries (in its preprocessing contract) to score its predictions."""

    reference: list  # (K, 2) mean training shape, unit size
    mean: list  # (2K,) mean aligned shape
    modes: list  # (M, 2K) main modes of variation
    variances: list  # (M,) variance along each mode
    spread_scale: float | None  # held-out 90th percentile of a point's spread (None: no doubt head, no flip TTA)
    residual_scale: float  # ... of a point's distance from the shape model's reconstruction
    shape_scale: float  # ... of a face's Mahalanobis distance in the modes
    shape_weight: float = FLIP_SHAPE_WEIGHT  # the shape's share of a face's doubt (models before it: 2/3)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Confidence | None":
        return None if data is None else cls(**data)

    def _shape_terms(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mahalanobis distance (N,) and per-point reconstruction distance (N, K) of shapes (N, K, 2)."""
        aligned = procrustes(points, np.array(self.reference, np.float32)).reshape(len(points), -1)
        z = aligned - np.array(self.mean, np.float32)
        modes = np.array(self.modes, np.float32)
        coefficients = z @ modes.T
        mahalanobis = (coefficients ** 2 / np.array(self.variances, np.float32)).sum(axis=1)
        residual = np.linalg.norm((z - coefficients @ modes).reshape(len(points), -1, 2), axis=-1)
        return mahalanobis, residual

    def scores(self, points: np.ndarray, spread: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoint scores (N, K) and landmark scores (N,), each in [0, 1], for predictions (N, K, 2)."""
        points = np.asarray(points, np.float32)
        if not len(points):
            return np.zeros((0, points.shape[1]), np.float32), np.zeros(0, np.float32)
        if not bool(np.isfinite(points).all()):
            points = np.nan_to_num(points)
        mahalanobis, residual = self._shape_terms(points)
        point_doubt = residual / self.residual_scale
        face_doubt = mahalanobis / self.shape_scale
        if spread is not None and self.spread_scale is not None:
            relative = np.asarray(spread, np.float32) / np.float32(self.spread_scale)
            point_doubt = (point_doubt + relative) / 2
            count = min(WEAKEST_POINTS, relative.shape[1])
            weakest = -np.sort(-relative, axis=1)[:, :count].mean(axis=1)
            face_doubt = self.shape_weight * face_doubt + (1 - self.shape_weight) * weakest
        return np.power(np.float32(0.5), point_doubt), np.power(np.float32(0.5), face_doubt)


def fit_confidence(train_landmarks, heldout_predictions, heldout_spread, shape_weight: float = FLIP_SHAPE_WEIGHT) -> Confidence | None:
    """The shape model from training landmarks (N, K, 2), the scales from predictions on held-out
    faces (and their spread), numpy arrays or CPU tensors. None when there is too little data for either."""
    train_landmarks = np.asarray(train_landmarks, np.float32)
    n, k = train_landmarks.shape[:2]
    modes = min(MODES, 2 * k - 4, n - 1)
    if modes < 1 or len(heldout_predictions) < 2 or k < 3:
        return None
    reference = train_landmarks.mean(axis=0)
    for _ in range(3):  # generalised Procrustes: align to the mean, re-estimate the mean
        reference = procrustes(train_landmarks, reference).mean(axis=0)
        reference = reference / np.linalg.norm(reference)
    aligned = procrustes(train_landmarks, reference).reshape(n, -1)
    mean = aligned.mean(axis=0)
    _, singular, vectors = np.linalg.svd(aligned - mean, full_matrices=False)
    variances = np.maximum(singular[:modes] ** 2 / max(1, n - 1), 1e-10)
    draft = Confidence(reference.tolist(), mean.tolist(), vectors[:modes].tolist(), variances.tolist(), None, 1.0, 1.0,
                       shape_weight)
    mahalanobis, residual = draft._shape_terms(np.nan_to_num(np.asarray(heldout_predictions, np.float32)))
    draft.residual_scale = max(float(np.quantile(residual.reshape(-1), QUANTILE)), 1e-9)
    draft.shape_scale = max(float(np.quantile(mahalanobis, QUANTILE)), 1e-9)
    if heldout_spread is not None:
        draft.spread_scale = max(float(np.quantile(np.asarray(heldout_spread, np.float32).reshape(-1), QUANTILE)), 1e-9)
    return draft
