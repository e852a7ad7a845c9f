"""The field's landmark metrics: NME, failure rate, AUC of the cumulative error curve, per region."""

from __future__ import annotations

import torch

from .landmarks import IBUG68_REGIONS


def per_image_nme(pred: torch.Tensor, gt: torch.Tensor, norm_points: list[int] | tuple[int, int]) -> torch.Tensor:
    """Mean point-to-point error of each image (N,) divided by the distance between the two norm points."""
    a, b = norm_points
    norm = (gt[:, a] - gt[:, b]).norm(dim=-1).clamp_min(1e-6)
    return (pred - gt).norm(dim=-1).mean(dim=1) / norm


def failure_rate(nme: torch.Tensor, threshold: float) -> float:
    """Share of images whose NME is above `threshold`."""
    return float((nme > threshold).float().mean()) if len(nme) else float("nan")


def auc(nme: torch.Tensor, limit: float = 0.10, steps: int = 1000) -> float:
    """Area under the cumulative error curve on [0, limit], divided by `limit` (1.0 = every image perfect)."""
    if not len(nme):
        return float("nan")
    thresholds = torch.linspace(0, limit, steps + 1, dtype=torch.float64)
    cumulative = (nme.double()[None, :] <= thresholds[:, None]).double().mean(dim=1)
    return float(torch.trapezoid(cumulative, thresholds) / limit)


def seed_mse(pred: torch.Tensor, gt: torch.Tensor, image_sizes: torch.Tensor, frame_resize: int = 250) -> float:
    """The original README's loss units: MSE of `(keypoint - 100) / 50` on its 224-pixel frame.

    The frame is the image rescaled so that its shorter side is `frame_resize`; the offset cancels,
    so this is the squared error in those pixels / 50^2, for any model and framing.
    """
    scale = frame_resize / image_sizes.min(dim=1).values.to(pred.dtype)  # (N,)
    diff = (pred - gt) * scale.view(-1, 1, 1) / 50.0
    return float((diff**2).mean())


def summarize(pred: torch.Tensor, gt: torch.Tensor, image_sizes: torch.Tensor, norm_points) -> dict:
    """Every metric `fkd evaluate` reports, as plain floats (fractions, not percent)."""
    nme = per_image_nme(pred, gt, norm_points)
    out = {
        "nme": float(nme.mean()),
        "nme_median": float(nme.median()),
        "fr_8": failure_rate(nme, 0.08),
        "fr_10": failure_rate(nme, 0.10),
        "auc_10": auc(nme, 0.10),
        "mse_seed": seed_mse(pred, gt, image_sizes),
    }
    if gt.shape[1] == 68:
        a, b = norm_points
        norm = (gt[:, a] - gt[:, b]).norm(dim=-1).clamp_min(1e-6)
        err = (pred - gt).norm(dim=-1) / norm[:, None]
        out["regions"] = {name: float(err[:, list(idx)].mean()) for name, idx in IBUG68_REGIONS.items()}
    return out


def cumulative_curve(nme: torch.Tensor, limit: float = 0.10, steps: int = 200) -> tuple[list[float], list[float]]:
    thresholds = torch.linspace(0, limit, steps + 1)
    share = [(nme <= t).float().mean().item() for t in thresholds]
    return thresholds.tolist(), share
