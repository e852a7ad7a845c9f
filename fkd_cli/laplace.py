"""Laplace likelihood training (`loss: laplace`): the network learns each coordinate's spread with it.

Plain L1 pulls every coordinate toward its label equally hard. With a Laplace likelihood the network
also predicts each coordinate's scale b and minimises |error| / b + log b: a coordinate it cannot place
(a jaw point behind a hand, a blurred chin) gets a large b and pulls less, and the ones it can place
pull more. That is the heteroscedastic form of residual log-likelihood estimation (Li et al. 2021,
"Human Pose Regression with Residual Log-likelihood Estimation"), which took direct regression much of
the way to heatmap methods on human pose; measured here against L1 in README, Ablation.

The scales exist only while training: they come from one linear layer on the regression head's hidden
layer (`ScaledTrainee`), which the trainer keeps beside the network and never saves into `model.pth`.
So the saved model, its inference cost and every backend and export are exactly those of an L1 model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .doubt import head_parts
from .errors import FkdError

# b starts at about a crop pixel: targets span [-1, 1] over the crop, so one pixel of a 96-px crop is
# 2 / 96 = 0.021; the trained model's median error is about that
INITIAL_SCALE = 0.02
# and never goes below a tenth of a pixel, where |error| / b would make one easy point's gradient
# outweigh a whole face's
MIN_LOG_SCALE = math.log(0.002)


class ScaledTrainee(nn.Module):
    """A network with a feature grid and a hidden regression layer, plus a training-only scale head:
    (N, C, S, S) -> (N, 4K), the network's 2K coordinates then 2K log scales."""

    def __init__(self, net: nn.Module):
        super().__init__()
        _, head = head_parts(net)
        if sum(isinstance(layer, nn.Linear) for layer in head) < 2:  # config.py refuses these first; a backstop
            raise FkdError("config key 'loss': laplace needs a regression head with a hidden layer (head_hidden > 0)")
        self.net = net
        self.scale = nn.Linear(head[-1].in_features, head[-1].out_features)
        nn.init.zeros_(self.scale.weight)  # every coordinate starts at the same b, the network's own init untouched
        nn.init.constant_(self.scale.bias, math.log(INITIAL_SCALE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, head = head_parts(self.net)
        hidden = head[:-1](features(x))
        return torch.cat([head[-1](hidden), self.scale(hidden)], dim=1)


def laplace_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each face's mean Laplace negative log-likelihood (without its constant log 2), (N,), from
    `ScaledTrainee`'s output (N, 4K) and the targets (N, 2K)."""
    n = target.shape[1]
    if out.shape[1] != 2 * n:
        raise FkdError(f"config key 'loss': laplace needs coordinates and scales ({2 * n} outputs), got {out.shape[1]}")
    log_b = out[:, n:].clamp_min(MIN_LOG_SCALE)
    return ((out[:, :n] - target).abs() * torch.exp(-log_b) + log_b).mean(dim=1)
