"""MTCNN face detector (Zhang et al., 2016): a three-stage cascade of small CNNs.

P-Net scans an image pyramid for candidate faces, R-Net (24 px) and O-Net (48 px) re-score and
refine them. The stages run on ONNX Runtime from `assets/mtcnn-*.onnx` (made from the bundled weights
by tools/export_mtcnn.py; a test holds them to the PyTorch networks in mtcnn_nets.py): R-Net's and
O-Net's files take the photo and the candidate boxes and cut the crops themselves (ONNX's RoiAlign,
one call a stage). The glue is numpy and OpenCV: detecting imports no torch.
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np

from .errors import FkdError

NORM_MEAN, NORM_SCALE = 127.5, 0.0078125  # the networks' input: (pixel - 127.5) / 128
STAGES = ("pnet", "rnet", "onet")


def no_faces() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)


def nchw(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 -> a network's (1, 3, H, W) input. numpy's strided copy: cv2.dnn.blobFromImage
    was no faster on pyramid levels and took 5 ms against 1 ms for a whole 640x480 photo on one thread."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))[None]


def square(boxes: np.ndarray) -> np.ndarray:
    """The square with the same centre and the longer side: what the next stage is trained on."""
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    side = (boxes[:, 2:4] - boxes[:, :2]).max(axis=1, keepdims=True)
    return np.concatenate([centre - side / 2, centre + side / 2], axis=1)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the nets' box offsets (fractions of the box size)."""
    size = np.tile(boxes[:, 2:4] - boxes[:, :2], (1, 2))
    return boxes + offsets * size


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the boxes (N, 4: x0, y0, x1, y1) kept by greedy non-maximum suppression, best first:
    OpenCV's, the same boxes as torchvision's `nms` (tested, ties included)."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1).astype(np.float64)
    return np.asarray(cv2.dnn.NMSBoxes(xywh, scores.astype(np.float64), 0.0, threshold), np.int64).reshape(-1)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """NMS with overlap measured against the smaller box: drops a box nested in a better one."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[:, :2])
        hi = np.minimum(boxes[i, 2:4], boxes[:, 2:4])
        inter = np.clip(hi - lo, 0, None).prod(axis=1)
        suppressed |= inter / np.maximum(np.minimum(area[i], area), 1e-6) > threshold
    return np.array(keep, dtype=np.int64)


class OrtStage:
    """One stage's ONNX file on ONNX Runtime: numpy arrays in (by input order), numpy arrays out."""

    def __init__(self, path):
        from .backends import ort_session

        self.session = ort_session(str(path))
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *arrays: np.ndarray):
        return self.session.run(None, {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in zip(self.names, arrays)})


def load_runtime(runtime: str = "onnxruntime") -> tuple:
    """The three stages on ONNX Runtime, or (`pytorch`) the PyTorch networks they were made from."""
    if runtime == "pytorch":
        from .mtcnn_nets import reference_stages

        return reference_stages()
    folder = resources.files("fkd_cli") / "assets"
    paths = [folder / f"mtcnn-{name}.onnx" for name in STAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FkdError(f"the MTCNN network file {missing[0]} is missing from the installation; reinstall fkd")
    return tuple(OrtStage(p) for p in paths)


class MTCNN:
    """Run the cascade on one RGB image (H, W, 3), uint8 or float in 0..255; boxes in that image's pixels."""

    def __init__(self, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709, runtime: str = "onnxruntime",
                 overlaps=(0.5, 0.7, 0.7, 0.7)):
        self.pnet, self.rnet, self.onet = load_runtime(runtime)
        self.thresholds, self.factor = thresholds, factor
        # NMS overlaps: within a pyramid level, across levels, after R-Net, after O-Net (over the smaller box)
        self.overlaps = overlaps

    def __call__(self, image: np.ndarray, min_face: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        # stage 1: P-Net over a pyramid in which the smallest wanted face becomes 12 px. The photo is
        # area-resized once, to the first (largest) level; the smaller levels are area-resized from that
        # one, which reads far fewer pixels than resizing the photo again for each level
        pixels = np.ascontiguousarray(image, dtype=np.float32)
        scale = 12.0 / min_face
        candidates, first = [], None
        while min(height, width) * scale >= 12:
            size = (int(height * scale + 1), int(width * scale + 1))
            level = cv2.resize(pixels if first is None else first, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            first = level if first is None else first
            offsets, prob = self.pnet(nchw((level - NORM_MEAN) * NORM_SCALE))
            ys, xs = np.nonzero(prob[0] >= self.thresholds[0])
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                boxes = np.floor(np.concatenate([(2 * cells + 1) / np.float32(scale), (2 * cells + 12) / np.float32(scale)], axis=1))
                scores = prob[0, ys, xs]
                keep = nms(boxes, scores, self.overlaps[0])
                candidates.append((boxes[keep], scores[keep], offsets[0, :, ys, xs][keep]))
            scale *= self.factor
        if not candidates:
            return no_faces()
        boxes, scores, offsets = (np.concatenate(parts) for parts in zip(*candidates))
        keep = nms(boxes, scores, self.overlaps[1])
        boxes = square(regress(boxes[keep], offsets[keep])).astype(np.float32)

        # stages 2 and 3: re-score and refine on fixed-size crops, which the stages cut from the photo
        photo = nchw(pixels)  # 0..255: the stages normalise their own crops
        for stage, net in enumerate((self.rnet, self.onet), start=1):
            offsets, scores = net(photo, boxes)
            passed = scores > self.thresholds[stage]
            boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
            if not len(boxes):
                return no_faces()
            if stage == 1:
                keep = nms(boxes, scores, self.overlaps[2])
                boxes = square(regress(boxes[keep], offsets[keep])).astype(np.float32)
            else:
                boxes = regress(boxes, offsets)
                keep = nms_min(boxes, scores, self.overlaps[3])
                boxes, scores = boxes[keep], scores[keep]
        return boxes, scores
