"""MTCNN's three networks in PyTorch, with their bundled weights: the reference the ONNX stages the detector
runs (`assets/mtcnn-*.onnx`, written by tools/export_mtcnn.py) are made from and tested against.

The weights ship in `assets/mtcnn.pth` (MIT; see `assets/MTCNN-LICENSE.txt`): the original networks as
converted by facenet-pytorch, whose layer names we keep. That package itself cannot be a dependency
(it pins torch < 2.3). Predicting never imports this module: the detector runs the ONNX files.
"""

from __future__ import annotations

import copy
from importlib import resources

import torch
from torch import nn

from .errors import FkdError
from .mtcnn import NORM_MEAN, NORM_SCALE
from . import tv  # noqa: F401  (torchvision without torch._dynamo)
from torchvision.ops import roi_align  # noqa: E402

WEIGHTS = "mtcnn.pth"  # the three networks' state dicts, in assets/


def face_probability(logits: torch.Tensor) -> torch.Tensor:
    """The face class's probability from the two class logits (softmax), or from their difference alone
    (a sigmoid: the same number) when `for_export` has made the layer give just that."""
    return logits.sigmoid()[:, 0] if logits.shape[1] == 1 else logits.softmax(dim=1)[:, 1]


class PNet(nn.Module):
    """12x12 proposal net, fully convolutional: a face score and a box offset every 2 pixels."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), face_probability(self.conv4_1(x))


class RNet(nn.Module):
    """24x24 refinement net."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # the converted Caffe weights expect (W, H) order when flattening
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_2(x), face_probability(self.dense5_1(x))


class ONet(nn.Module):
    """48x48 output net (its five-landmark head is not used here)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_2(x), face_probability(self.dense6_1(x))


def load_networks() -> tuple[PNet, RNet, ONet]:
    """The three networks with their bundled weights, loaded without running any pickled code."""
    path = resources.files("fkd_cli") / "assets" / WEIGHTS
    try:
        with resources.as_file(path) as file:
            data = torch.load(file, map_location="cpu", weights_only=True)
        nets = PNet(), RNet(), ONet()
        for name, net in zip(("pnet", "rnet", "onet"), nets):
            net.load_state_dict(data[name])
            net.eval().requires_grad_(False)
    except (OSError, RuntimeError, KeyError) as exc:
        raise FkdError(f"the MTCNN weights in {path} could not be loaded ({exc}); reinstall fkd") from None
    return nets




class CutAndRun(nn.Module):
    """R-Net or O-Net with its input cut from the photo: every candidate box (K, 4) of a float image
    (1, 3, H, W) in 0..255 through one `roi_align` (2x2 bilinear samples an output cell; sampling every
    pixel of a cell cost 4x more on large faces and gave no better landmarks, README; zeros outside the
    image, the original padding), normalised as the network expects. Exported as one ONNX graph, the cut
    is ONNX's RoiAlign op and the detector needs no torch."""

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, image: torch.Tensor, boxes: torch.Tensor):
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        crops = roi_align(image, rois, self.size, sampling_ratio=2, aligned=True)
        return self.net((crops - NORM_MEAN) * NORM_SCALE)


class FastPReLU(nn.Module):
    """PReLU written as ops ONNX Runtime runs quickly: its own PRelu kernel took 1.44 ms where
    `Max(x, a * x)` took 0.11 ms (P-Net's first activation, one thread: benchmarks/detector_stages.py);
    PReLU was over a third of P-Net's time. The max is
    PReLU exactly when every slope is at most 1; some layers have a slope above 1, and there
    `x + (a - 1) * min(x, 0)` is (within a float rounding)."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.register_buffer("slope", prelu.weight.detach().clone())
        self.slope_at_most_one = bool((self.slope <= 1).all())

    def forward(self, x):
        slope = self.slope.reshape(-1, *([1] * (x.dim() - 2)))  # one a channel: (C, 1, 1) after a conv
        if self.slope_at_most_one:
            return torch.maximum(x, x * slope)
        return x + (slope - 1) * torch.clamp(x, max=0)  # the export folds `slope - 1` into a constant


def logit_difference(layer: nn.Module) -> nn.Module:
    """A two-class conv or Linear layer as one that gives face minus non-face logit directly."""
    one = copy.deepcopy(layer)
    weight, bias = layer.weight.detach(), layer.bias.detach()
    one.weight = nn.Parameter((weight[1:] - weight[:1]).clone(), requires_grad=False)
    one.bias = nn.Parameter((bias[1:] - bias[:1]).clone(), requires_grad=False)
    if isinstance(layer, nn.Conv2d):
        one.out_channels = 1
    else:
        one.out_features = 1
    return one


def for_export(net: nn.Module) -> nn.Module:
    """A copy of the network as ONNX Runtime runs it fastest, the same function: every PReLU as
    FastPReLU, and the face probability a sigmoid of one logit difference instead of a softmax over two
    classes (ONNX Runtime's Softmax across channels took a tenth of P-Net's time). For tools/export_mtcnn.py."""
    fast = copy.deepcopy(net)
    for name, module in net.named_children():
        if isinstance(module, nn.PReLU):
            setattr(fast, name, FastPReLU(module))
        elif name in ("conv4_1", "dense5_1", "dense6_1"):  # the face / non-face layer of each network
            setattr(fast, name, logit_difference(module))
    return fast


def reference_stages() -> tuple:
    """The three stages on PyTorch with numpy in and out, as the ONNX stages are called (the reference
    tests compare those with)."""
    pnet, rnet, onet = load_networks()

    def run(net):
        def call(*arrays):
            with torch.inference_mode():
                return tuple(t.numpy() for t in net(*(torch.from_numpy(a) for a in arrays)))
        return call

    return run(pnet), run(CutAndRun(rnet, 24)), run(CutAndRun(onet, 48))
