"""What a config's optimisation keys build: the loss, the optimiser and the learning-rate schedule."""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import nn

from .config import Config
from .errors import FkdError
from .laplace import laplace_nll


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 0.1, eps: float = 0.02) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) on targets in [-1, 1], each face's: log-shaped near zero, L1 far away."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean(dim=1)


def l1_nme_loss(pred: torch.Tensor, target: torch.Tensor, norm_points: list[int]) -> torch.Tensor:
    """L1 with each face's error divided by its distance between the norm points, as NME divides it.
    Plain L1 on the crop weighs every face alike, while NME counts an error on a turned head (eyes close
    together in the crop) up to about twice, and on a small face in a whole-frame crop more: this weighs
    the faces as the metric does (measured worse than plain L1: README, Ablation). The distance is kept
    above 0.1 (a 20th of the crop) so that a face seen from the side cannot take over a batch."""
    a, b = norm_points
    points = target.reshape(len(target), -1, 2)
    distance = (points[:, a] - points[:, b]).norm(dim=-1).clamp_min(0.1)
    return (pred - target).abs().mean(dim=1) / distance


# Each loss gives one value a face, (N,): the batch's loss is their mean, or their weighted mean (hard_focus).
LOSSES = {
    "mse": lambda p, t: (p - t).pow(2).mean(dim=1),
    "l1": lambda p, t: (p - t).abs().mean(dim=1),
    "smooth_l1": lambda p, t: nn.functional.smooth_l1_loss(p, t, beta=0.02, reduction="none").mean(dim=1),
    "wing": wing_loss,
    "laplace": laplace_nll,  # with the trainer's training-only scale head (laplace.py)
}


def focused_mean(per_face: torch.Tensor, focus: float) -> torch.Tensor:
    """The batch's loss with each face weighted by (its loss / the batch's mean loss) ** focus.

    The weights are detached and scaled to average 1, so the loss keeps its size and only the gradient's
    share between the faces moves toward the ones the network gets most wrong (online hard example
    weighting, as in the hard-keypoint mining of pose estimation): the hand-covered, blocky and badly lit
    faces that make up FR@10% are few in a batch, and a plain mean lets the many easy faces outvote them.
    Measured worse than the plain mean at two seeds (README, Ablation). focus = 0 is the plain mean."""
    if focus == 0:
        return per_face.mean()
    losses = per_face.detach()
    # relative to the batch before the power, so that no focus under- or overflows; both means are kept
    # above zero so that a batch with no error at all gives a loss of 0, not 0/0
    weights = (losses / losses.mean().clamp_min(1e-12)).pow(focus)
    return (weights / weights.mean().clamp_min(1e-12) * per_face).mean()


def make_loss(cfg: Config, norm_points: list[int] | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The config's loss as a function of (prediction, target), both (N, 2K) in target units, to a scalar."""
    if cfg.loss == "l1_nme":
        if norm_points is None:
            raise FkdError("config key 'loss': l1_nme needs 'norm_points' (the two points whose distance "
                           "normalises NME) for a layout other than iBUG-68")
        per_face = functools.partial(l1_nme_loss, norm_points=norm_points)
    else:
        per_face = LOSSES[cfg.loss]
    return lambda pred, target: focused_mean(per_face(pred, target), cfg.hard_focus)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)


def make_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
