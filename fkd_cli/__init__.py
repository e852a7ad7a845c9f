"""fkd: facial keypoint detection."""

import os

# PyTorch's OpenMP threads busy-wait between operations by default; beside another busy process they
# then fight it for the cores. Waiting passively made `fkd predict` 7-30% faster beside a CPU hog in
# every paired run of benchmarks/under_load.py, and no slower alone. OpenMP reads this once, when
# torch is first imported, so it is set here (unless the user set it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def load_model(path=None, detector: str | None = None, device: str = "auto", trust_code: bool = False,
               backend: str = "auto", min_face: float | None = None):
    """A ready predictor: `load_model().predict("photo.jpg")` returns an `ImageResult` (numpy
    `keypoints` (F, 68, 2), `boxes`, `scores`, `keypoint_scores`, `regions`, `to_dict()`).
    `device`: "auto" (CUDA, then Apple MPS, then CPU), as on the command line. `backend`: "auto" runs
    a `.pth` on ONNX Runtime on the CPU (faster; its ONNX twin is shipped or made once), "pytorch" or
    "onnxruntime" to choose. `min_face`: the smallest face looked for, in pixels of the photo (default 40).

    `path` is a `.pth` checkpoint or an exported `.onnx` (neither runs code when loaded), or a
    TorchScript `.pt`, which is a program: it loads only with `trust_code=True`. None = the bundled model.
    """
    from .inference import load_predictor

    return load_predictor(path, detector=detector, device=device, trust_code=trust_code, backend=backend,
                          min_face=min_face)


__all__ = ["__version__", "load_model"]
