"""Expanding what a user passes to `fkd predict` into files, without importing torch, so that a
mistyped path is a one-line error in a fraction of a second."""

from __future__ import annotations

import glob
from pathlib import Path

from .errors import FkdError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


def collect_inputs(inputs: list[str], recursive: bool = False) -> list[Path]:
    """Files as given (any suffix: a bad one is reported per file), image files inside folders,
    and glob patterns (expanded here too, for shells that pass them quoted)."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            paths += sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            paths.append(path)
        elif glob.has_magic(raw):
            matches = sorted(Path(p) for p in glob.glob(raw, recursive=recursive) if Path(p).is_file())
            if not matches:
                raise FkdError(f"{raw}: the pattern matches no file")
            paths += matches
        else:
            raise FkdError(f"{raw}: no such file or folder")
    if not paths:
        raise FkdError(f"no image files found in {', '.join(inputs)}" + ("" if recursive else " (use --recursive for sub-folders)"))
    seen, unique = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def check_model_path(path: Path | None) -> None:
    """A `--model` that is missing or a folder, found before torch and the model load."""
    if path is not None and not Path(path).is_file():
        raise FkdError(f"{path}: is a folder, not a model file" if Path(path).is_dir() else f"{path}: no such model file")
