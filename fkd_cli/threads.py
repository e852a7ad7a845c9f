"""How many CPU threads the networks get: one setting for ONNX Runtime's sessions and PyTorch.

PyTorch is imported only where a model runs on it (training, `--backend pytorch`, a GPU): the default
path runs ONNX Runtime, so the setting lives here rather than in `torch.set_num_threads` alone.
"""

from __future__ import annotations

import os
import sys

_chosen = 0  # 0: not chosen (the runtimes' defaults)


def cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """`--threads N` (0 keeps the defaults): ONNX Runtime sessions made from now on, and PyTorch."""
    global _chosen
    _chosen = threads
    if "torch" in sys.modules:  # else PyTorch gets it when it is first put to work (apply_to_torch)
        apply_to_torch()
    return threads


def runtime_threads() -> int:
    """Threads for a new ONNX Runtime session: as chosen, else as many as PyTorch uses when it is loaded
    (so that a caller's `torch.set_num_threads` still governs both), else one a core."""
    if _chosen:
        return _chosen
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else cores()


def apply_to_torch() -> None:
    """Called when PyTorch is first put to work, in case `--threads` was set before it was imported."""
    if _chosen:
        import torch

        torch.set_num_threads(_chosen)
