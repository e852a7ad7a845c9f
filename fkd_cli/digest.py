"""File digests: the data archive's integrity check and the link from an export (or a checkpoint's ONNX
twin) to the exact checkpoint it was made from. Its own module, free of heavy imports, because the
twin check runs at the start of every `fkd predict`."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
