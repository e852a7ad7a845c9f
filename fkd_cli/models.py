"""Architectures, built by name. Each maps (N, C, S, S) crops to (N, 2K) coordinates in target units."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _flat_features(features: nn.Module, channels: int, size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, channels, size, size)).flatten(1).shape[1]


class SeedFirst(nn.Module):
    """The original project's first network: NaimishNet-style, four conv layers (32-256 filters),
    max-pooling, and a 1000-1000 fully connected head with no dropout. It overfits, as it did then."""

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0):
        super().__init__()
        layers, channels = [], in_channels
        for out, kernel in ((32, 4), (64, 3), (128, 2), (256, 1)):
            layers += [nn.Conv2d(channels, out, kernel), nn.ELU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        flat = _flat_features(self.features, in_channels, input_size)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 1000), nn.ELU(), nn.Dropout(dropout),
            nn.Linear(1000, 1000), nn.ELU(), nn.Dropout(dropout), nn.Linear(1000, 2 * num_keypoints),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SeedFinal(nn.Module):
    """The original project's final network: three conv layers with fewer filters (16-64), pooled,
    then dropout before a two-stage fully connected head (512, then 2K)."""

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.3):
        super().__init__()
        layers, channels = [], in_channels
        for out, kernel in ((16, 5), (32, 3), (64, 3)):
            layers += [nn.Conv2d(channels, out, kernel), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = out
        # the full final map is flattened, as the original did: where a feature is matters for coordinates
        self.features = nn.Sequential(*layers)
        flat = _flat_features(self.features, in_channels, input_size)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 512), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(512, 2 * num_keypoints),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SeedFinalBN(nn.Module):
    """The original project's final network as its own code defines it (found after the two
    reconstructions above, see the README's section on the original runs): three 5x5 convs of 16, 32
    and 64 filters, each followed by BatchNorm, ReLU and 2x2 max-pooling; the full final map flattened
    (64 x 24 x 24 on a 224 input), dropout, then a two-stage head (1024, then 2K)."""

    FILTERS = (16, 32, 64)

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.4):
        super().__init__()
        layers, channels = [], in_channels
        for out in self.FILTERS:
            layers += [nn.Conv2d(channels, out, 5), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        flat = _flat_features(self.features, in_channels, input_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 1024), nn.ReLU(inplace=True),
                                  nn.Linear(1024, 2 * num_keypoints))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SeedFirstBN(SeedFinalBN):
    """A second guess at the original's first network, in the style of its final one as its own code
    has it (SeedFinalBN): the final run had "fewer conv layers and filters" and added dropout, so this
    is four 5x5 convs of 16, 32, 64 and 128 filters (one layer more than the final's 16-64, each
    followed by BatchNorm, ReLU and 2x2 max-pooling), the full final map flattened (128 x 10 x 10 on a
    224 input), and the same two-stage head (1024, then 2K) with no dropout (the original's first
    network is not in the code found; a CPU trains this one in about an hour)."""

    FILTERS = (16, 32, 64, 128)

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0):
        super().__init__(num_keypoints, in_channels, input_size, dropout)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """Two 3x3 convs with an identity shortcut (ResNet's basic block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def separable(cin: int, cout: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """A depthwise 3x3 conv then a pointwise 1x1 (MobileNet's): about a ninth of a 3x3 conv's work."""
    layers = [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
              nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class SeparableResidual(nn.Module):
    """Residual with depthwise-separable convs in place of the two 3x3 convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(separable(channels, channels), separable(channels, channels, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class FkdNet(nn.Module):
    """Our face-crop regressor: a small ResNet at 1/4..1/16 resolution, then a fully connected head
    on the flattened final grid (flattening keeps *where* features are, which coordinates need)."""

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0, width: int = 32,
                 hidden: int = 0, input_norm: bool = False):
        super().__init__()
        self.features = self.make_features(in_channels, width)
        if input_norm:
            # each crop to mean 0 and spread 1 over its (C, H, W): a dark frame and an overexposed one reach
            # the first conv at the same brightness and contrast; a layer norm without its affine part is
            # exactly that, and inside the network every backend and export applies it the same way
            self.features.insert(0, nn.LayerNorm((in_channels, input_size, input_size), eps=1e-6, elementwise_affine=False))
        flat = _flat_features(self.features, in_channels, input_size)
        # a hidden layer lets the head model the face's global shape, not just map features linearly
        layers = [nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * num_keypoints)] if hidden else [
            nn.Linear(flat, 2 * num_keypoints)]
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), *layers)

    # per stage (1/4, 1/8, 1/16): the strided layer that halves the grid, and the residual block after it
    downs = (conv_bn, conv_bn, conv_bn)
    blocks = (Residual, Residual, Residual)

    @classmethod
    def make_features(cls, in_channels: int, w: int) -> nn.Sequential:
        layers, channels = [conv_bn(in_channels, w, 2)], w  # 1/2
        for down, block, out in zip(cls.downs, cls.blocks, (w, 2 * w, 4 * w)):
            layers += [down(channels, out, 2), block(out)]
            channels = out
        return nn.Sequential(*layers, nn.Conv2d(4 * w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FkdNetSeparable(FkdNet):
    """FkdNet's layout with depthwise-separable convs after the stem: at width 48 about a third of
    FkdNet-32's multiply-adds (16 M against 45 M a 96-px crop) and 2.3x faster on ONNX Runtime, one thread
    (README, Speed). The stem stays a full 3x3 conv: on three input channels a depthwise conv sees no colour."""

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0, width: int = 48,
                 hidden: int = 0, input_norm: bool = False):
        super().__init__(num_keypoints, in_channels, input_size, dropout, width, hidden, input_norm)

    downs = (separable, separable, separable)
    blocks = (SeparableResidual, SeparableResidual, SeparableResidual)


class FkdNetHybrid(FkdNet):
    """Separable convs at 1/4 and 1/8 (where FkdNet's full convs cost most per useful feature), FkdNet's
    full convs at 1/16: at width 32 about 20 M multiply-adds a crop, 1.0 ms a face (README, Speed)."""

    downs = (separable, separable, conv_bn)
    blocks = (SeparableResidual, SeparableResidual, Residual)


class SoftArgmax2d(nn.Module):
    """Heatmaps (N, K, H, W) -> expected (x, y) per map in [-1, 1] crop units (integral regression).

    Differentiable and sub-pixel: the network learns where, not a number out of a dense layer.
    """

    def __init__(self, height: int, width: int, beta: float = 1.0):
        super().__init__()
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
        self.register_buffer("xs", xs, persistent=False)
        self.register_buffer("ys", ys, persistent=False)
        self.beta = beta

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return self.with_spread(heatmaps)[0]

    def with_spread(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The coordinates (N, 2K) and the log of each map's standard deviation along x and y (N, 2K):
        how widely the network spreads its belief, which a doubt head reads (doubt.py)."""
        n, k, h, w = heatmaps.shape
        prob = torch.softmax(heatmaps.reshape(n, k, h * w) * self.beta, dim=-1).reshape(n, k, h, w)
        px, py = prob.sum(dim=2), prob.sum(dim=3)  # marginals along x (N, K, W) and y (N, K, H)
        x, y = (px * self.xs).sum(dim=-1), (py * self.ys).sum(dim=-1)
        var_x = (px * self.xs ** 2).sum(dim=-1) - x ** 2
        var_y = (py * self.ys ** 2).sum(dim=-1) - y ** 2
        spread = 0.5 * torch.log(torch.stack((var_x, var_y), dim=-1).clamp_min(1e-8))
        return torch.stack((x, y), dim=-1).reshape(n, 2 * k), spread.reshape(n, 2 * k)


class HeatmapRegressor(nn.Module):
    """What the heatmap networks share: a decoded 1/4-resolution map turned into one heatmap a keypoint
    (`fuse`, then a 1x1 conv) and read out by SoftArgmax2d; their doubt head reads their 1/16 grid and
    each heatmap's log spread along x and y. Subclasses build the encoder and decoder and implement
    `decode(x) -> (decoded map, 1/16 grid)`."""

    def make_readout(self, channels: int, num_keypoints: int, input_size: int, dropout: float) -> None:
        self.fuse = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout2d(dropout), conv_bn(channels, channels))
        self.heatmaps = nn.Conv2d(channels, num_keypoints, 1)
        side = -(-input_size // 4)
        self.soft_argmax = SoftArgmax2d(side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.doubt_features(x)[0]

    def doubt_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The coordinates (N, 2K) and what a doubt head reads (N, F): the flattened 1/16 grid (as
        FkdNet's doubt head reads its grid) and each heatmap's log spread along x and y."""
        decoded, grid = self.decode(x)
        coordinates, spread = self.soft_argmax.with_spread(self.heatmaps(self.fuse(decoded)))
        return coordinates, torch.cat([grid.flatten(1), spread], dim=1)


class FkdHeatmapNet(HeatmapRegressor):
    """Our heatmap regressor: a small encoder to 1/16, decoded back to a 1/4-resolution grid with a
    skip connection, one heatmap per keypoint, soft-argmax to coordinates in [-1, 1]. Its decoder
    runs at 4 x width channels: 124 M multiply-adds a 96-px crop at width 24 (2.7x FkdNet's), 219 M at width 32.

    Coordinates are in crop units (-1..1), so the config's targets must span [-1, 1] (the default).
    """

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0, width: int = 24):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(in_channels, w, 2), conv_bn(w, 2 * w, 2), Residual(2 * w))  # 1/4
        self.down = nn.Sequential(conv_bn(2 * w, 4 * w, 2), Residual(4 * w), conv_bn(4 * w, 4 * w, 2), Residual(4 * w))  # 1/16
        self.lateral = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w))
        self.make_readout(4 * w, num_keypoints, input_size, dropout)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine = self.stem(x)
        grid = self.down(fine)
        return nn.functional.interpolate(grid, size=fine.shape[-2:], mode="nearest") + self.lateral(fine), grid


class FkdNetIntegral(HeatmapRegressor):
    """Integral (soft-argmax) heatmap regression on FkdNet's backbone at about its cost: the same
    stages to 1/16, then a light top-down decoder (FPN-style: 1x1 laterals from the 1/8 and 1/4
    stages, nearest upsampling, one 3x3 conv) at `width` channels to one heatmap a keypoint at 1/4
    resolution: 52.3 M multiply-adds a 96-px crop at width 32, 1.15x FkdNet's (README, Ablation, heatmaps).

    Coordinates are in crop units (-1..1) and a soft-argmax cannot leave its grid, so a point
    outside the crop is predicted at its edge.
    """

    def __init__(self, num_keypoints: int, in_channels: int, input_size: int, dropout: float = 0.0, width: int = 32):
        super().__init__()
        w = width
        stages = FkdNet.make_features(in_channels, w)  # stem, then (down, block) at 1/4, 1/8, 1/16, then 1x1 to 2w
        self.to_quarter, self.to_eighth, self.to_sixteenth = stages[:3], stages[3:5], stages[5:]
        self.lateral_quarter = nn.Sequential(nn.Conv2d(w, w, 1, bias=False), nn.BatchNorm2d(w))
        self.lateral_eighth = nn.Sequential(nn.Conv2d(2 * w, w, 1, bias=False), nn.BatchNorm2d(w))
        self.top = nn.Sequential(nn.Conv2d(2 * w, w, 1, bias=False), nn.BatchNorm2d(w))
        self.make_readout(w, num_keypoints, input_size, dropout)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        quarter = self.to_quarter(x)
        eighth = self.to_eighth(quarter)
        grid = self.to_sixteenth(eighth)
        up = nn.functional.interpolate(self.top(grid), size=eighth.shape[-2:], mode="nearest") + self.lateral_eighth(eighth)
        return nn.functional.interpolate(up, size=quarter.shape[-2:], mode="nearest") + self.lateral_quarter(quarter), grid


MODELS: dict[str, Callable[..., nn.Module]] = {
    "fkdnet-hm": FkdHeatmapNet,
    "fkdnet-integral": FkdNetIntegral,
    "seed-first": SeedFirst,
    "seed-first-bn": SeedFirstBN,
    "seed-final": SeedFinal,
    "seed-final-bn": SeedFinalBN,
    "fkdnet": FkdNet,
    "fkdnet-sep": FkdNetSeparable,
    "fkdnet-hybrid": FkdNetHybrid,
}


# our small ResNets: the models that take `width`, `head_hidden` and `input_norm`
FKDNET_FAMILY = ("fkdnet", "fkdnet-sep", "fkdnet-hybrid")

# architectures whose coordinates come from heatmaps, not a linear regression head (laplace needs one: config.py)
HEATMAP_MODELS = {"fkdnet-hm", "fkdnet-integral"}


def model_kwargs(name: str, cfg) -> dict:
    """The architecture arguments a config implies (saved in the checkpoint to rebuild the model)."""
    kwargs = {"in_channels": cfg.channels, "input_size": cfg.input_size, "dropout": cfg.dropout}
    if name in (*FKDNET_FAMILY, *HEATMAP_MODELS):
        kwargs["width"] = cfg.width
    if name in FKDNET_FAMILY:
        kwargs["hidden"] = cfg.head_hidden
        if cfg.input_norm:  # only when on, so the checkpoints written before the key rebuild as they were
            kwargs["input_norm"] = True
    return kwargs


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm that follows a conv into the conv's weights (eval mode only).

    The same maths with fewer ops: eager PyTorch on a CPU spends much of a small model's time in
    per-op overhead, so this matters at batch 1.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    return model


def build_model(name: str, num_keypoints: int, **kwargs) -> nn.Module:
    try:
        builder = MODELS[name]
    except KeyError:
        from .errors import FkdError

        raise FkdError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}") from None
    return builder(num_keypoints=num_keypoints, **kwargs)
