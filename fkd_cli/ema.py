"""An exponential moving average of the weights during training (what Ultralytics' ModelEMA does),
on PyTorch's own `AveragedModel`: validation and the saved model use the average, the optimiser
keeps stepping the raw weights."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

# Ultralytics ramps the decay up over the first steps so that the average is not dominated by the
# random initial weights: decay_n = decay * (1 - exp(-n / RAMP_STEPS)).
RAMP_STEPS = 2000


def ramped_decay(decay: float, updates: int) -> float:
    return decay * (1 - math.exp(-updates / RAMP_STEPS))


class WeightAverage:
    """The averaged copy of `model`; `update()` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float):
        @torch.no_grad()
        def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
            d = ramped_decay(decay, int(n_averaged))
            if torch.is_floating_point(averaged[0]):
                torch._foreach_lerp_(averaged, current, 1 - d)
            else:  # integer buffers (BatchNorm's batch counter) follow the model
                for a, c in zip(averaged, current, strict=True):
                    a.copy_(c)

        # use_buffers: BatchNorm's running statistics are averaged with the weights they belong to
        self.averaged = AveragedModel(model, multi_avg_fn=ema, use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def restore(self, state_dict: dict, updates: int) -> None:
        self.module.load_state_dict(state_dict)
        self.averaged.n_averaged.fill_(updates)
