"""A doubt head: the network's own estimate of each point's error, from the features it already
computed, so that a one-pass model (no flip TTA, hence no flip spread) still knows which of its
points and faces to doubt (README, Confidence).

The head is one linear layer on what the network's regression head sees: the flattened feature grid
and the hidden layer before the last linear layer. It predicts log(error + EPS) of each point (error in
crop pixels) and is fitted after training with the network frozen, by ridge regression:
- on augmented crops of the faces the model was trained on (the trainer's own augmentations: turned,
  badly framed and whole-frame crops are where errors are large), a few passes;
- and on crops that have slid off those faces (`DisplacedCrops`): the network still puts a face in
  them, and its true error is known because the face is. Without them the head, never having seen a
  crop without a face, rated background crops like faces (so a video track would never end: a
  noise or wall crop scored 0.17-0.28, faces 0.17-0.62);
- its strength chosen by how well the prediction ranks errors on the held-out validation faces.
The landmarks do not change; the network's output grows from 2K to 3K numbers (K log errors last).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .errors import FkdError
from .framing import crop, crop_points_to_targets, to_input
from .framing import DOUBT_EPS as EPS  # crop pixels added to the error before the log, in one place

STRENGTHS = (1.0, 10.0, 100.0, 1000.0)  # ridge strengths tried (features are the network's own, unscaled)
PASSES = 3  # augmented passes over the training faces
DISPLACED_PASSES = 1  # passes of crops slid off the faces (a quarter of what the head is fitted on)
DISPLACEMENT = (0.3, 1.2)  # how far a displaced crop slides, in crop sides (from half a face to none of it)


def head_parts(net: nn.Module) -> tuple[nn.Module, nn.Sequential]:
    """The feature extractor and regression head of a network that has both (FkdNet and the seeds')."""
    features, head = getattr(net, "features", None), getattr(net, "head", None)
    if not isinstance(features, nn.Module) or not isinstance(head, nn.Sequential) or not isinstance(head[-1], nn.Linear):
        raise FkdError(f"{type(net).__name__}: a doubt head needs a network with a feature grid and a linear regression head")
    return features, head


def doubt_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output (N, 2K) and what the doubt head reads (N, F): the flattened feature grid
    and the input of the head's last linear layer, or what a network without such a head offers
    through its own `doubt_features` (the heatmap networks: their grid and their heatmaps' spread)."""
    own = getattr(net, "doubt_features", None)
    if callable(own):
        return own(x)
    features, head = head_parts(net)
    grid = features(x)
    hidden = head[:-1](grid)
    return head[-1](hidden), torch.cat([grid.flatten(1), hidden.flatten(1)], dim=1)


class WithDoubt(nn.Module):
    """A network plus its doubt head: (N, C, S, S) -> (N, 3K), the coordinates then K log errors."""

    def __init__(self, net: nn.Module, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.net = net
        self.doubt = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.doubt.weight.copy_(weight)
            self.doubt.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, features = doubt_features(self.net, x)
        return torch.cat([outputs, self.doubt(features)], dim=1)


def attach(net: nn.Module, state: dict, num_keypoints: int, channels: int, input_size: int) -> WithDoubt:
    """`net` with the doubt head a checkpoint stores ({"weight": (K, F), "bias": (K,)}), checked."""
    try:
        weight, bias = torch.as_tensor(state["weight"], dtype=torch.float32), torch.as_tensor(state["bias"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError):
        raise FkdError("damaged doubt head (a weight and a bias expected)") from None
    with torch.no_grad():
        width = doubt_features(net.eval(), torch.zeros(1, channels, input_size, input_size))[1].shape[1]
    if weight.shape != (num_keypoints, width) or bias.shape != (num_keypoints,) or not (
            bool(torch.isfinite(weight).all()) and bool(torch.isfinite(bias).all())):
        raise FkdError(f"damaged doubt head ({tuple(weight.shape)} weights, expected {(num_keypoints, width)} finite ones)")
    return WithDoubt(net, weight, bias)


class DisplacedCrops(Dataset):
    """Each training face's crop slid a random 0.3-1.2 of its side in a random direction, with the
    face's true keypoints (now partly or wholly outside the crop): (input, target, unit) like
    KeypointDataset's, seeded, so the fit is repeatable."""

    def __init__(self, images, keypoints: torch.Tensor, pp, seed: int = 0):
        self.images, self.keypoints, self.pp = images, keypoints, pp
        rng = np.random.default_rng(seed)
        self.angles = rng.uniform(0, 2 * np.pi, len(images))
        self.distances = rng.uniform(*DISPLACEMENT, len(images))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, points = self.images[index], self.keypoints[index]
        height, width = image.shape[:2]
        left, top, side = self.pp.framer.truth_box(width, height, points)[:3]
        shift = self.distances[index] * side
        box = (int(round(left + shift * np.cos(self.angles[index]))), int(round(top + shift * np.sin(self.angles[index]))), side)
        pixels, moved = crop(image, box, self.pp.input_size, points.numpy())
        x = torch.from_numpy(to_input(pixels[None], self.pp)[0])
        return x, crop_points_to_targets(torch.from_numpy(moved), self.pp).reshape(-1), torch.tensor(1.0)


def collect(net: nn.Module, dataset, passes: int, target_scale: float, batch_size: int = 64, progress=None):
    """Doubt features (M, F) and each point's error in crop pixels (M, K) over `passes` of `dataset`
    (a KeypointDataset: augmented when it is the training one)."""
    xs, errors = [], []
    total, done = passes * len(dataset), 0
    with torch.inference_mode():
        for _ in range(passes):
            for x, target, _unit in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                outputs, features = doubt_features(net, x)
                xs.append(features)
                errors.append(((outputs - target).reshape(len(x), -1, 2) * target_scale).norm(dim=-1))
                done += len(x)
                if progress is not None:
                    progress(done, total)
    return torch.cat(xs).double(), torch.cat(errors).double()


def ridge_path(features: torch.Tensor, targets: torch.Tensor, strengths) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Least squares with an L2 penalty on the weights (not the intercept), for each strength: (K, F)
    weights and (K,) bias each. The centred Gram matrix, the costly part, is made once for all."""
    mean_x, mean_y = features.mean(0), targets.mean(0)
    x, y = features - mean_x, targets - mean_y
    gram, moment = x.T @ x, x.T @ y
    identity = torch.eye(x.shape[1], dtype=x.dtype)
    fits = []
    for strength in strengths:
        weight = torch.linalg.solve(gram + strength * identity, moment).T
        fits.append((weight, mean_y - weight @ mean_x))
    return fits


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho of two flat tensors (ties broken by order: errors are continuous)."""
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def fit_doubt_head(net: nn.Module, train_set, val_set, target_scale: float, displaced_set=None,
                   passes: int = PASSES, progress=None) -> tuple[dict, dict]:
    """The doubt head for a frozen `net`, fitted on `passes` of `train_set` and DISPLACED_PASSES of
    `displaced_set`: ({"weight", "bias"} as float32 tensors, a report of the fit)."""
    net.eval()
    train_x, train_err = collect(net, train_set, passes, target_scale, progress=progress)
    if displaced_set is not None:
        off_x, off_err = collect(net, displaced_set, DISPLACED_PASSES, target_scale)
        train_x, train_err = torch.cat([train_x, off_x]), torch.cat([train_err, off_err])
    val_x, val_err = collect(net, val_set, 1, target_scale)
    train_y, val_y = torch.log(train_err + EPS), torch.log(val_err + EPS)
    best = None
    for strength, (weight, bias) in zip(STRENGTHS, ridge_path(train_x, train_y, STRENGTHS)):
        rho = rank_correlation((val_x @ weight.T + bias).reshape(-1), val_y.reshape(-1))
        if best is None or rho > best[0]:
            best = (rho, strength, weight, bias)
    rho, strength, weight, bias = best
    report = {"strength": strength, "val_rank_correlation": rho, "train_crops": len(train_x), "val_faces": len(val_x)}
    return {"weight": weight.float(), "bias": bias.float()}, report
