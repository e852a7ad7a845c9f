"""MTCNN face detector (Zhang et al., 2016): a three-stage cascade of small CNNs.

P-Net scans an image pyramid for candidate faces, R-Net (24 px) and O-Net (48 px) re-score and
refine them. The weights ship in `assets/mtcnn.pth` (MIT; see `assets/MTCNN-LICENSE.txt`): the
original networks as converted by facenet-pytorch, whose layer names we keep. That package itself
cannot be a dependency (it pins torch < 2.3), so the cascade is written here, batched with
torchvision ops: one `roi_align` call cuts every candidate of a stage, zero-padded past the image
edge as the original does.
"""

from __future__ import annotations

from importlib import resources

import torch
from torch import nn

from .errors import FkdError
from .tvops import nms, roi_align

WEIGHTS = "mtcnn.pth"


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
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)[:, 1]


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
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1]


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
        return self.dense6_2(x), self.dense6_1(x).softmax(dim=1)[:, 1]


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


NORM_MEAN, NORM_SCALE = 127.5, 0.0078125  # the networks' input: (pixel - 127.5) / 128


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - NORM_MEAN) * NORM_SCALE


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square with the same centre and the longer side: what the next stage is trained on."""
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    side = (boxes[:, 2:4] - boxes[:, :2]).max(dim=1, keepdim=True).values
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply the nets' box offsets (fractions of the box size)."""
    size = (boxes[:, 2:4] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS with overlap measured against the smaller box: drops a box nested in a better one."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lo = torch.maximum(boxes[i, :2], boxes[:, :2])
        hi = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (hi - lo).clamp(min=0).prod(dim=1)
        suppressed |= inter / torch.minimum(area[i], area).clamp(min=1e-6) > threshold
    return torch.tensor(keep, dtype=torch.long)


class OrtNet:
    """One stage exported to ONNX (`assets/mtcnn-NAME.onnx`, made from the same weights; a test checks
    they agree), run by ONNX Runtime: P-Net over the pyramid is about 1.5x faster there."""

    def __init__(self, path):
        from .backends import ort_session

        self.session = ort_session(str(path))

    def __call__(self, x: torch.Tensor):
        import numpy as np

        offsets, prob = self.session.run(None, {"x": np.ascontiguousarray(x.numpy())})  # no copy when contiguous
        return torch.from_numpy(offsets), torch.from_numpy(prob)


def load_runtime(runtime: str = "auto"):
    """The three stages on ONNX Runtime when it is installed (`auto`), else (or `pytorch`) on PyTorch."""
    if runtime != "pytorch":
        try:
            import onnxruntime  # noqa: F401

            folder = resources.files("fkd_cli") / "assets"
            paths = [folder / f"mtcnn-{name}.onnx" for name in ("pnet", "rnet", "onet")]
            if all(p.is_file() for p in paths):
                return tuple(OrtNet(p) for p in paths)
        except ImportError:
            pass
    return load_networks()


class MTCNN:
    """Run the cascade on one float RGB image (3, H, W) in 0..255; boxes in that image's pixels."""

    def __init__(self, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709, runtime: str = "auto",
                 overlaps=(0.5, 0.7, 0.7, 0.7)):
        self.pnet, self.rnet, self.onet = load_runtime(runtime)
        self.thresholds, self.factor = thresholds, factor
        # NMS overlaps: within a pyramid level, across levels, after R-Net, after O-Net (over the smaller box)
        self.overlaps = overlaps

    def _cut(self, image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
        # 2x2 bilinear samples an output cell: sampling every pixel of a cell (sampling_ratio -1) cost 4x
        # more on large faces and gave no better landmarks through the whole path (README, The bundled
        # face detector); outside the image roi_align reads zeros, the original padding
        rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
        return normalise(roi_align(image[None], rois, size, sampling_ratio=2, aligned=True))

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, min_face: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
        import cv2

        height, width = image.shape[-2:]
        # stage 1: P-Net over a pyramid in which the smallest wanted face becomes 12 px. The photo is
        # area-resized once, to the first (largest) level; the smaller levels are area-resized from that
        # one, which reads far fewer pixels than resizing the photo again for each level. OpenCV does the
        # layout changes (channel planes to HWC, HWC to the normalised NCHW input): 4x faster than strided
        # numpy/torch copies of the same values
        image = image.float().contiguous()  # both are no-ops for what detect() passes
        pixels = cv2.merge(list(image.numpy()))
        scale = 12.0 / min_face
        candidates, first = [], None
        while min(height, width) * scale >= 12:
            size = (int(height * scale + 1), int(width * scale + 1))
            level = cv2.resize(pixels if first is None else first, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            first = level if first is None else first
            offsets, prob = self.pnet(torch.from_numpy(cv2.dnn.blobFromImage(level, NORM_SCALE, mean=(NORM_MEAN,) * 3)))
            ys, xs = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if len(ys):
                cells = torch.stack([xs, ys], dim=1).float()
                boxes = torch.cat([(2 * cells + 1) / scale, (2 * cells + 12) / scale], dim=1).floor()
                scores = prob[0, ys, xs]
                keep = nms(boxes, scores, self.overlaps[0])
                candidates.append((boxes[keep], scores[keep], offsets[0, :, ys, xs].T[keep]))
            scale *= self.factor
        if not candidates:
            return torch.zeros(0, 4), torch.zeros(0)
        boxes, scores, offsets = (torch.cat(parts) for parts in zip(*candidates))
        keep = nms(boxes, scores, self.overlaps[1])
        boxes = square(regress(boxes[keep], offsets[keep]))

        # stages 2 and 3: re-score and refine on fixed-size crops
        for stage, (net, size) in enumerate(((self.rnet, 24), (self.onet, 48)), start=1):
            offsets, scores = net(self._cut(image, boxes, size))
            passed = scores > self.thresholds[stage]
            boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
            if not len(boxes):
                return torch.zeros(0, 4), torch.zeros(0)
            if stage == 1:
                keep = nms(boxes, scores, self.overlaps[2])
                boxes = square(regress(boxes[keep], offsets[keep]))
            else:
                boxes = regress(boxes, offsets)
                keep = nms_min(boxes, scores, self.overlaps[3])
                boxes, scores = boxes[keep], scores[keep]
        return boxes, scores

