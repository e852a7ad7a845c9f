"""All checkpoint reading and writing: self-describing files that load with `weights_only=True`."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from . import __version__
from .errors import FkdError
from .outputs import atomic_write

FORMAT = "fkd-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """`payload`: arch, arch_kwargs, state_dict, preprocess, config, metrics, plus resume state."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "fkd_version": __version__, **payload}
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict:
    """Load one of our checkpoints; anything else is refused without running any of its code."""
    path = Path(path)
    if not path.is_file():
        raise FkdError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise FkdError(
            f"{path}: refused: it holds objects that only an unsafe (code-running) load could read ({first[:120]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FkdError(f"{path}: not a readable checkpoint (corrupt or truncated: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FkdError(f"{path}: not an fkd checkpoint (train one with `fkd train`)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise FkdError(f"{path}: written by a newer fkd ({data.get('fkd_version')}); upgrade fkd to read it")
    for key in ("arch", "arch_kwargs", "state_dict", "preprocess"):
        if key not in data:
            raise FkdError(f"{path}: fkd checkpoint without '{key}' (file damaged?)")
    return data


def build_from_checkpoint(data: dict) -> torch.nn.Module:
    """The network a checkpoint describes, with its weights, in eval mode."""
    from .models import build_model

    pp = data["preprocess"]
    model = build_model(data["arch"], pp["num_keypoints"], **data["arch_kwargs"])
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise FkdError(f"checkpoint weights do not fit architecture '{data['arch']}' ({str(exc).splitlines()[0]})") from None
    return model.eval()
