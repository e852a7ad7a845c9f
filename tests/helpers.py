"""What tests share: synthetic data sets in the official layout, the tiny training settings, and
running the CLI the way a user does (with the one-line error contract)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from fkd_cli.cli import app

# A crude 68-point mean face on a unit square (x right, y down), iBUG order.
_JAW = [(0.1 + 0.8 * i / 16, 0.35 + 0.55 * math.sin(math.pi * i / 16)) for i in range(17)]
_BROWS = [(0.18 + 0.06 * i, 0.3 - 0.03 * math.sin(math.pi * i / 4)) for i in range(5)]
_BROWS += [(0.58 + 0.06 * i, 0.3 - 0.03 * math.sin(math.pi * i / 4)) for i in range(5)]
_NOSE = [(0.5, 0.38 + 0.05 * i) for i in range(4)] + [(0.42 + 0.04 * i, 0.6 + 0.01 * abs(i - 2)) for i in range(5)]


def _eye(cx):
    return [(cx + 0.07 * math.cos(math.pi - t), 0.42 + (0.025 if 0 < t < math.pi else -0.025) * abs(math.sin(t)) * (-1))
            for t in [k * math.pi / 3 for k in range(6)]]


_EYES = _eye(0.33) + _eye(0.67)
_MOUTH = [(0.5 + 0.15 * math.cos(math.pi - 2 * math.pi * k / 12), 0.75 + 0.06 * math.sin(2 * math.pi * k / 12)) for k in range(12)]
_MOUTH += [(0.5 + 0.1 * math.cos(math.pi - 2 * math.pi * k / 8), 0.75 + 0.03 * math.sin(2 * math.pi * k / 8)) for k in range(8)]
MEAN_FACE_68 = np.array(_JAW + _BROWS + _NOSE + _EYES + _MOUTH, dtype=np.float32)
MEAN_FACE_5 = MEAN_FACE_68[[36, 45, 30, 48, 54]]  # eyes, nose tip, mouth corners
FLIP_5 = [1, 0, 2, 4, 3]
assert MEAN_FACE_68.shape == (68, 2)


def synthetic_face(rng: np.random.Generator, template: np.ndarray, size=(120, 100)):
    """An RGBA image with a drawn face and its keypoints, at a random place and scale."""
    width, height = size
    side = rng.uniform(0.35, 0.55) * min(width, height)
    x0 = rng.uniform(0.05 * width, width - side - 0.05 * width)
    y0 = rng.uniform(0.05 * height, height - side - 0.05 * height)
    points = template * side + np.array([x0, y0], dtype=np.float32)
    background = tuple(int(v) for v in rng.integers(20, 90, 3))
    img = Image.new("RGBA", (width, height), background + (255,))
    draw = ImageDraw.Draw(img)
    draw.ellipse([x0 + 0.05 * side, y0 + 0.05 * side, x0 + 0.95 * side, y0 + 1.0 * side], fill=(210, 170, 140, 255))
    if len(template) == 68:
        for first, last in ((36, 41), (42, 47)):
            draw.polygon([tuple(p) for p in points[first:last + 1]], fill=(40, 30, 30, 255))
    for p in points:
        draw.ellipse([p[0] - 1, p[1] - 1, p[0] + 1, p[1] + 1], fill=(120, 40, 40, 255))
    return img, points


def make_dataset(root: Path, n_train: int = 24, n_test: int = 8, template: np.ndarray = MEAN_FACE_68, seed: int = 0) -> Path:
    """A folder in the official layout: `.jpg` names holding RGBA PNGs, like the real archive."""
    rng = np.random.default_rng(seed)
    k = len(template)
    for split, n, csv_name in (("training", n_train, "training_frames_keypoints.csv"), ("test", n_test, "test_frames_keypoints.csv")):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = ["," + ",".join(str(i) for i in range(2 * k))]
        for i in range(n):
            img, points = synthetic_face(rng, template)
            name = f"Person_{split}_{i:02d}.jpg"
            img.save(root / split / name, format="PNG")
            lines.append(name + "," + ",".join(f"{v:.2f}" for v in points.reshape(-1)))
        (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


# Small enough to train in seconds on a laptop CPU, and still an fkdnet with the same code path.
TINY_BASE = ["epochs=2", "input_size=32", "width=8", "batch_size=8", "detector=none", "val_fraction=0.25"]
TINY = TINY_BASE + ["rotation=5", "color_jitter=0.1"]


def sets(items: list[str]) -> list[str]:
    """`--set` arguments for each `key=value`."""
    return [arg for item in items for arg in ("--set", item)]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    """The error contract: non-zero exit, one line, no traceback."""
    assert result.exit_code != 0
    text = result.output.strip()
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return text
