"""What a config's optimisation keys build: the loss, the optimiser and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 0.1, eps: float = 0.02) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) on targets in [-1, 1]: log-shaped near zero, L1 far away."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


LOSSES = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "smooth_l1": lambda p, t: nn.functional.smooth_l1_loss(p, t, beta=0.02), "wing": wing_loss}


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
