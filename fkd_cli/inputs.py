"""Expanding what a user passes to `fkd predict` into image and video files, without importing
torch, so that a mistyped path is a one-line error in a fraction of a second."""

from __future__ import annotations

import glob
from pathlib import Path

from .errors import FkdError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


def is_video(path: Path) -> bool:
    """By content where it is recognisable (MP4/MOV, Matroska/WebM, AVI, MPEG, FLV), else by name."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return Path(path).suffix.lower() in VIDEO_SUFFIXES
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV":
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return True
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(inputs: list[str], recursive: bool = False) -> list[Path]:
    """Files as given (any suffix: a bad one is reported per file), image files inside folders,
    and glob patterns (expanded here too, for shells that pass them quoted)."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            paths += sorted(p for p in path.glob(pattern)
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
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
        raise FkdError(f"no image or video files found in {', '.join(inputs)}" + ("" if recursive else " (use --recursive for sub-folders)"))
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
