"""All checkpoint reading and writing: self-describing files that load with `weights_only=True`."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from . import __version__
from .errors import FkdError
from .inputs import check_model_path
from .outputs import atomic_write, write_error

FORMAT = "fkd-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """`payload`: arch, arch_kwargs, state_dict, preprocess, config, metrics, plus resume state."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "fkd_version": __version__, **payload}
    try:
        atomic_write(path, lambda tmp: torch.save(data, tmp))
    except OSError as exc:  # disk full, or the run folder removed: one line; the file already there is kept whole
        raise write_error(exc, path) from None


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> dict:
    """Load one of our checkpoints; anything else is refused without running any of its code."""
    path = Path(path)
    check_model_path(path)
    if path.stat().st_size == 0:
        raise FkdError(f"{path}: is empty (0 bytes): an interrupted copy or download? Use another checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FkdError(
            f"{path}: refused: it holds objects that only an unsafe (code-running) load could read ({_refusal_cause(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FkdError(f"{path}: not a readable checkpoint (corrupt or truncated: {_first_line(exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FkdError(f"{path}: not an fkd checkpoint (train one with `fkd train`)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise FkdError(f"{path}: written by a newer fkd ({data.get('fkd_version')}); upgrade fkd to read it")
    for key in ("arch", "arch_kwargs", "state_dict", "preprocess"):
        if key not in data:
            raise FkdError(f"{path}: fkd checkpoint without '{key}' (file damaged?)")
    return data


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:160] if lines else exc.__class__.__name__


def _refusal_cause(exc: BaseException) -> str:
    """The line of torch's long weights_only message that says what was refused (e.g. the global)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue", "Re-running")
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(boilerplate):
            return line[:200]
    return _first_line(exc)


def build_from_checkpoint(data: dict, source: Path | str = "checkpoint") -> torch.nn.Module:
    """The network a checkpoint describes, with its weights (and doubt head, doubt.py), in eval mode;
    errors name `source`."""
    from .models import build_model

    pp = data["preprocess"]
    model = build_model(data["arch"], pp["num_keypoints"], **data["arch_kwargs"])
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise FkdError(f"{source}: weights do not fit architecture '{data['arch']}' ({str(exc).splitlines()[0]})") from None
    head = data.get("doubt_head")
    if bool(pp.get("doubt_head")) != (head is not None):
        raise FkdError(f"{source}: damaged: its contract and its doubt head disagree on whether it has one")
    if head is not None:  # the network's own error estimate (doubt.py): its outputs grow to 3K
        from .doubt import attach

        try:
            model = attach(model, head, pp["num_keypoints"], pp["channels"], pp["input_size"])
        except FkdError as exc:
            raise FkdError(f"{source}: {exc}") from None
    return model.eval()


def update_checkpoint(source: Path, target: Path, preprocess: dict | None = None, config: dict | None = None,
                      extra: dict | None = None) -> dict:
    """Copy a checkpoint with some preprocessing-contract and config values changed (e.g. the
    detector rule or inference options, which change how a trained network is applied, not its
    weights; `extra`: top-level entries such as the doubt head). Everything else, weights included, is
    kept; returns the new preprocessing contract."""
    import dataclasses

    from .framing import Preprocess

    data = load_checkpoint(source)
    unknown = set(preprocess or {}) - {f.name for f in dataclasses.fields(Preprocess)}
    if unknown:
        raise FkdError(f"{source}: its preprocessing contract has no {', '.join(sorted(unknown))}")
    data["preprocess"].update(preprocess or {})
    data.setdefault("config", {}).update(config or {})
    data.update(extra or {})
    payload = {k: v for k, v in data.items() if k not in ("format", "format_version", "fkd_version")}
    save_checkpoint(target, payload)
    return data["preprocess"]
