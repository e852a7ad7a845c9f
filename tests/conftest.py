"""Fixtures: synthetic data sets in the official layout, one tiny trained model, a real photograph."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from fkd_cli.cli import app

from .helpers import MEAN_FACE_5, TINY, make_dataset, sets


def pytest_configure(config):
    """ONNX twins made during the tests go to a folder of their own, never the user's cache."""
    import os
    import tempfile

    os.environ["FKD_CACHE"] = tempfile.mkdtemp(prefix="fkd-test-cache-")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def dataset5(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data5"), template=MEAN_FACE_5, seed=1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, dataset) -> Path:
    """One tiny trained run shared by the predict/evaluate/export tests."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["train", "--config", "fkd-best", "--data-dir", str(dataset), "--out", str(out), "--quiet", *sets(TINY)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory) -> Path:
    """scikit-image's astronaut photograph (one face), as a PNG file."""
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path
