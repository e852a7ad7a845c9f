"""The ONNX Runtime twin of a `.pth` checkpoint, so that the default path runs on ONNX Runtime (about
2x faster than PyTorch eager on a CPU, see the README's speed section) with no step from the user:
an export shipped beside the checkpoint (the bundled model's), or one made once into a cache folder.
A twin is used only when it records the SHA-256 of exactly this checkpoint, and only after its own
parity check against PyTorch passed when it was made (`fkd export`'s, 1e-3 px)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FkdError


def cache_dir() -> Path:
    """`$FKD_CACHE`, else `$XDG_CACHE_HOME/fkd`, else `~/.cache/fkd`."""
    if os.environ.get("FKD_CACHE"):
        return Path(os.environ["FKD_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fkd"


def load_twin(pth: Path, threads: int = 0):
    """(backend, contract, meta) of this checkpoint's ONNX twin, exporting it into the cache on first
    use; None when there is none to be had (no ONNX Runtime, an unwritable cache, a failed export)."""
    from .backends import load_onnx, need_onnx
    from .digest import sha256_of

    try:
        need_onnx(runtime_only=True)  # running a twin needs only ONNX Runtime (export_model checks for onnx)
    except FkdError:
        return None
    sha = sha256_of(pth)
    cached = cache_dir() / "onnx" / f"{sha}.onnx"
    for candidate in (pth.with_suffix(".onnx"), cached):
        if candidate.is_file():
            try:
                backend, pp, meta = load_onnx(candidate, threads)
            except FkdError:
                continue
            if meta.get("source_sha256") == sha:
                return backend, pp, meta
    try:
        from .export import export_model

        cached.parent.mkdir(parents=True, exist_ok=True)
        export_model(pth, "onnx", cached, check=True)
        return load_onnx(cached, threads)
    except (FkdError, OSError):
        return None  # the PyTorch path still works: a twin is only a speed-up
