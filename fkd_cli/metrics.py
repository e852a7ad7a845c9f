"""The field's landmark metrics: NME, failure rate, AUC of the cumulative error curve, per region."""

from __future__ import annotations

import torch

from .landmarks import IBUG68_REGIONS


def point_errors(pred: torch.Tensor, gt: torch.Tensor, norm_points: list[int] | tuple[int, int]) -> torch.Tensor:
    """Each point's error (N, K), divided by its image's distance between the two norm points."""
    a, b = norm_points
    norm = (gt[:, a] - gt[:, b]).norm(dim=-1).clamp_min(1e-6)
    return (pred - gt).norm(dim=-1) / norm[:, None]


def per_image_nme(pred: torch.Tensor, gt: torch.Tensor, norm_points: list[int] | tuple[int, int]) -> torch.Tensor:
    """Mean point-to-point error of each image (N,) divided by the distance between the two norm points."""
    return point_errors(pred, gt, norm_points).mean(dim=1)


def per_image_region_nme(pred: torch.Tensor, gt: torch.Tensor, norm_points) -> dict[str, torch.Tensor]:
    """Each image's NME over each iBUG-68 region's points ({} for other layouts)."""
    if gt.shape[1] != 68:
        return {}
    err = point_errors(pred, gt, norm_points)
    return {name: err[:, list(idx)].mean(dim=1) for name, idx in IBUG68_REGIONS.items()}


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


SEED_FRAME = 250  # the original rescaled each image so that its shorter side is 250 px ...
SEED_SCALE = 50.0  # ... and trained on (keypoint - 100) / 50 in that frame


def seed_units_per_pixel(image_min_side):
    """One image pixel in the original's target units (the offset cancels in any difference), for an
    image whose shorter side is `image_min_side` (a number, or a tensor of them)."""
    return SEED_FRAME / image_min_side / SEED_SCALE


SEED_INPUT = 224  # ... of which a 224-px square was the network's input


def seed_units(height, width, squash: bool = False):
    """One image pixel along x and along y in the original's units, for an image of `height` x `width`
    (numbers, or tensors of them): the template's 250-rescaled frame, the same along both axes, or with
    `squash` the frame of the original's own code, the whole image resized to 224 x 224."""
    if squash:
        return SEED_INPUT / width / SEED_SCALE, SEED_INPUT / height / SEED_SCALE
    per_pixel = seed_units_per_pixel(torch.minimum(height, width) if torch.is_tensor(height) else min(height, width))
    return per_pixel, per_pixel


def per_image_seed_mse(pred: torch.Tensor, gt: torch.Tensor, image_sizes: torch.Tensor, squash: bool = False) -> torch.Tensor:
    """(N,) each image's MSE in the original README's loss units: `(keypoint - 100) / 50` on its
    224-pixel frame, for any model (the squared error in the 250-frame's pixels / 50^2). `squash`: in the
    frame of the original's own code instead (the whole image resized to 224 x 224), what a `squash` model
    trains on. `image_sizes` are (height, width) rows."""
    sizes = image_sizes.to(pred.dtype)
    scale = torch.stack(seed_units(sizes[:, 0], sizes[:, 1], squash), dim=-1)[:, None, :]  # (N, 1, 2)
    diff = (pred - gt) * scale
    return (diff**2).mean(dim=(1, 2))


def seed_mse(pred: torch.Tensor, gt: torch.Tensor, image_sizes: torch.Tensor, squash: bool = False) -> float:
    """The MSE over all images in the original README's loss units (per_image_seed_mse)."""
    return float(per_image_seed_mse(pred, gt, image_sizes, squash).mean())


def summarize(pred: torch.Tensor, gt: torch.Tensor, image_sizes: torch.Tensor, norm_points, squash: bool = False) -> dict:
    """Every metric `fkd evaluate` reports, as plain floats (fractions, not percent)."""
    nme = per_image_nme(pred, gt, norm_points)
    out = {
        "nme": float(nme.mean()),
        "nme_median": float(nme.median()),
        "fr_8": failure_rate(nme, 0.08),
        "fr_10": failure_rate(nme, 0.10),
        "auc_10": auc(nme, 0.10),
        "mse_seed": seed_mse(pred, gt, image_sizes, squash),
    }
    regions = per_image_region_nme(pred, gt, norm_points)
    if regions:
        out["regions"] = {name: float(values.mean()) for name, values in regions.items()}
    return out


def cumulative_curve(nme: torch.Tensor, limit: float = 0.10, steps: int = 200) -> tuple[list[float], list[float]]:
    thresholds = torch.linspace(0, limit, steps + 1)
    share = [(nme <= t).float().mean().item() for t in thresholds]
    return thresholds.tolist(), share
