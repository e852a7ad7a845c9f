"""torchvision's two compiled detection ops, `nms` and `roi_align`, without importing torchvision.

The face detector needs only these two, which live in torchvision's compiled library. Importing the
torchvision package took 0.18 s of every `fkd predict`'s start (it imports its models, datasets and
transforms); loading the library takes 3 ms, exactly as torchvision loads it itself
(`torchvision/extension.py`: `torch.ops.load_library`). Where that library is not found under a known
name, torchvision is imported the ordinary way, which registers the same ops.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import threading
from pathlib import Path

import torch

LIBRARY_NAMES = ("_C_stable", "_C")  # torchvision >= 0.29, then the older name
_LOCK = threading.Lock()  # `fkd predict`'s workers may detect their first faces at the same moment


def _registered() -> bool:
    try:
        torch.ops.torchvision.roi_align  # noqa: B018  (raises until the library is loaded)
        torch.ops.torchvision.nms  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


@functools.cache
def _load_ops() -> None:
    """Once a process: the checks below cost microseconds, but the detector calls these ops ten times a photo."""
    with _LOCK:
        _find_and_load()


def _find_and_load() -> None:
    if _registered():
        return
    spec = importlib.util.find_spec("torchvision")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for name in LIBRARY_NAMES:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                library = Path(folder) / f"{name}{suffix}"
                if library.is_file():
                    try:
                        torch.ops.load_library(str(library))
                    except OSError:
                        continue
                    if _registered():
                        return
    from . import tv  # noqa: F401  (the ordinary import registers the ops)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes (N, 4: x0, y0, x1, y1) kept by greedy non-maximum suppression, best first
    (`torchvision.ops.nms`)."""
    _load_ops()
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def roi_align(image: torch.Tensor, rois: torch.Tensor, size: int, sampling_ratio: int, aligned: bool = True) -> torch.Tensor:
    """(K, C, size, size) crops of `rois` (K, 5: batch index, x0, y0, x1, y1) from `image` (N, C, H, W)
    (`torchvision.ops.roi_align` with spatial_scale 1)."""
    _load_ops()
    return torch.ops.torchvision.roi_align(image, rois, 1.0, size, size, sampling_ratio, aligned)
