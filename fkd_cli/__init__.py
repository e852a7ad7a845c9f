"""fkd: facial keypoint detection."""

__version__ = "0.1.0"


def load_model(path=None, detector: str | None = None, device: str = "cpu"):
    """A ready predictor: `load_model().predict("photo.jpg")` returns faces with 68 keypoints each.

    `path` is a `.pth` checkpoint, an exported `.onnx` or TorchScript `.pt`; None = the bundled model.
    """
    from .inference import load_predictor

    return load_predictor(path, detector=detector, device=device)


__all__ = ["__version__", "load_model"]
