"""Confidence that means something, at no extra network cost. Two signals, both measured to rank errors
(benchmarks/confidence.py):

- spread: with flip TTA the model predicts each point twice (crop and mirrored crop); how far the two
  lie apart is the model's own doubt about that point;
- shape: how plausible the predicted shape is as a face, under a point-distribution model (Cootes et
  al. 1995) fitted on the training landmarks: the Mahalanobis distance of the Procrustes-aligned
  shape in the main modes, and each point's distance from the model's reconstruction. Profile,
  occluded and misplaced faces come out as unusual shapes.

Each signal is divided by its 90th percentile on held-out faces, so a value of 1 is "as doubtful as
one held-out case in ten"; a score is 0.5 ** (the signals' mean; for a face the shape counts twice),
so such a point or face scores 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

QUANTILE = 0.9  # held-out faces' quantile that maps to a score of 0.5
MODES = 16  # shape modes kept (fewer for small keypoint sets or data sets)
WEAKEST_POINTS = 5  # a face's spread is that of its least certain points


def procrustes(shapes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each shape (N, K, 2) moved, scaled and rotated onto `reference` (K, 2) by least squares."""
    centred = shapes - shapes.mean(dim=1, keepdim=True)
    target = reference - reference.mean(dim=0)
    z = torch.complex(centred[..., 0].double(), centred[..., 1].double())
    r = torch.complex(target[:, 0].double(), target[:, 1].double())
    # the best similarity is one complex factor a = <z, r> / <z, z>
    a = (z.conj() * r).sum(dim=1) / (z.abs() ** 2).sum(dim=1).clamp_min(1e-12)
    aligned = a[:, None] * z
    return torch.stack([aligned.real, aligned.imag], dim=-1).float()


@dataclass
class Confidence:
    """The calibration a model carries (in its preprocessing contract) to score its predictions."""

    reference: list  # (K, 2) mean training shape, unit size
    mean: list  # (2K,) mean aligned shape
    modes: list  # (M, 2K) main modes of variation
    variances: list  # (M,) variance along each mode
    spread_scale: float | None  # held-out 90th percentile of a point's flip-TTA spread (None: no flip TTA)
    residual_scale: float  # ... of a point's distance from the shape model's reconstruction
    shape_scale: float  # ... of a face's Mahalanobis distance in the modes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Confidence | None":
        return None if data is None else cls(**data)

    def _shape_terms(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mahalanobis distance (N,) and per-point reconstruction distance (N, K) of shapes (N, K, 2)."""
        aligned = procrustes(points, torch.tensor(self.reference)).reshape(len(points), -1)
        z = aligned - torch.tensor(self.mean)
        modes = torch.tensor(self.modes)
        coefficients = z @ modes.T
        mahalanobis = (coefficients ** 2 / torch.tensor(self.variances)).sum(dim=1)
        residual = (z - coefficients @ modes).reshape(len(points), -1, 2).norm(dim=-1)
        return mahalanobis, residual

    def scores(self, points: torch.Tensor, spread: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint scores (N, K) and landmark scores (N,), each in [0, 1], for predictions (N, K, 2)."""
        if not len(points):
            return torch.zeros(0, points.shape[1]), torch.zeros(0)
        if not bool(torch.isfinite(points).all()):
            points = torch.nan_to_num(points)
        mahalanobis, residual = self._shape_terms(points)
        point_doubt = residual / self.residual_scale
        face_doubt = mahalanobis / self.shape_scale
        if spread is not None and self.spread_scale is not None:
            relative = spread / self.spread_scale
            point_doubt = (point_doubt + relative) / 2
            weakest = relative.topk(min(WEAKEST_POINTS, relative.shape[1]), dim=1).values.mean(dim=1)
            # the shape counts twice for a face: it is what sees profile and occluded faces (the spread
            # of a turned face can be low); both weightings rank errors equally well (README, Confidence)
            face_doubt = (2 * face_doubt + weakest) / 3
        return torch.pow(0.5, point_doubt), torch.pow(0.5, face_doubt)


def fit_confidence(train_landmarks: torch.Tensor, heldout_predictions: torch.Tensor,
                   heldout_spread: torch.Tensor | None) -> Confidence | None:
    """The shape model from training landmarks (N, K, 2), the scales from predictions on held-out
    faces (and their flip-TTA spread). None when there is too little data for either."""
    n, k = train_landmarks.shape[:2]
    modes = min(MODES, 2 * k - 4, n - 1)
    if modes < 1 or len(heldout_predictions) < 2 or k < 3:
        return None
    reference = train_landmarks.float().mean(dim=0)
    for _ in range(3):  # generalised Procrustes: align to the mean, re-estimate the mean
        reference = procrustes(train_landmarks.float(), reference).mean(dim=0)
        reference = reference / reference.norm()
    aligned = procrustes(train_landmarks.float(), reference).reshape(n, -1)
    mean = aligned.mean(dim=0)
    _, singular, vectors = torch.linalg.svd(aligned - mean, full_matrices=False)
    variances = (singular[:modes] ** 2 / max(1, n - 1)).clamp_min(1e-10)
    draft = Confidence(reference.tolist(), mean.tolist(), vectors[:modes].tolist(), variances.tolist(), None, 1.0, 1.0)
    mahalanobis, residual = draft._shape_terms(torch.nan_to_num(heldout_predictions.float()))
    draft.residual_scale = float(torch.quantile(residual.reshape(-1), QUANTILE).clamp_min(1e-9))
    draft.shape_scale = float(torch.quantile(mahalanobis, QUANTILE).clamp_min(1e-9))
    if heldout_spread is not None:
        draft.spread_scale = float(torch.quantile(heldout_spread.float().reshape(-1), QUANTILE).clamp_min(1e-9))
    return draft
