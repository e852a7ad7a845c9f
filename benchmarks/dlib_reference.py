"""dlib's HOG face detector and 68-point shape predictor, the reference the speed benchmarks measure
in the same run. Optional: `pip install 'fkd[bench]'` (dlib-bin, face-recognition-models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def model_path() -> Path | None:
    """The 68-point model file that face-recognition-models ships, found without importing that
    package (its __init__ needs pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / MODEL_NAME
    return path if path.is_file() else None


def load():
    """(detector, predictor) or a sentence saying what is missing."""
    try:
        import dlib
    except ImportError:
        return "dlib is not installed (pip install 'fkd[bench]'): no dlib figures in this run"
    path = model_path()
    if path is None:
        return f"dlib's {MODEL_NAME} was not found (pip install face-recognition-models): no dlib figures in this run"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))
