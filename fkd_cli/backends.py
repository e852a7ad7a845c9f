"""Every runtime a model can run on, and reading a model file into one: a PyTorch checkpoint
(`.pth`), an ONNX file (ONNX Runtime) or a TorchScript archive (`.pt`), each with the
preprocessing contract it carries. Inference uses this module; export writes the files it reads.

What a model file can do when it is loaded:
- `.pth`: read with `torch.load(weights_only=True)`: tensors and plain data only, never code.
- `.onnx`: a graph of standard operators run by ONNX Runtime: no Python, no custom code.
- `.pt` (TorchScript): a program. Its `__setstate__` and methods run inside `torch.jit.load`, so
  loading one runs code from the file; fkd checks its own metadata in the archive first and then
  loads it only when the caller says `trust_code=True` (`--trust-code`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from . import threads as runtime_threads
from .errors import FkdError
from .framing import Preprocess
from .inputs import check_model_path

PREPROCESS_KEY = "fkd_preprocess"  # the contract's key in ONNX metadata_props / TorchScript extra files
META_KEY = "fkd_meta"
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")


def bundled_model_path() -> Path:
    return Path(str(resources.files("fkd_cli") / "assets" / "fkd-default.pth"))


# device files a GPU that PyTorch could use leaves on Linux (NVIDIA, WSL's GPU, AMD ROCm)
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def could_have_gpu() -> bool:
    """False only where PyTorch certainly finds no GPU: no GPU device file, not an Apple-silicon Mac.
    Lets the default path settle on the CPU without importing torch (1.6 to 3 s of every start here)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return sys.platform != "linux" or any(os.path.exists(f) for f in GPU_DEVICE_FILES)


def device_type(device: str = "auto") -> str:
    """"cpu", "cuda" or "mps": what `pick_device` would choose, without importing torch when it can only be the CPU."""
    if device == "cpu" or (device == "auto" and not could_have_gpu()):
        return "cpu"
    return pick_device(device).type


def pick_device(device: str = "auto"):
    """auto = CUDA, then Apple MPS, then CPU (a torch.device)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise FkdError(f"--device {device}: choose auto, cpu, cuda or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FkdError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FkdError("--device mps: Apple MPS is not available on this machine; use --device cpu")
    return torch.device(device)


class TorchBackend:
    """A PyTorch module (eager, or TorchScript) run on a device."""

    def __init__(self, model, device, name: str = "pytorch"):
        import torch

        self.model, self.device, self.name = model.eval().to(device), device, name
        torch.set_flush_denormal(True)  # subnormal weights are many times slower on a CPU, and round to 0 anyway
        runtime_threads.apply_to_torch()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 input (N, C, S, S) -> output (N, 2K), numpy in and out like every backend."""
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def need_onnx(runtime_only: bool = False) -> None:
    """Exporting needs `onnx` and ONNX Runtime; running an exported file only the runtime (importing
    `onnx` as well cost 0.17 s of every `fkd predict`'s start)."""
    try:
        if not runtime_only:
            import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise FkdError(
            f"ONNX support needs the '{exc.name}' package: pip install 'fkd[export]' (or pip install onnx onnxruntime)"
        ) from None


def ort_session(source, threads: int = 0):
    """An ONNX Runtime CPU session for a path or serialised model bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1")  # as for PyTorch: no slow subnormals
    # no busy-waiting threads between calls: beside PyTorch's own (the face detector) they fought for
    # the two cores and video dropped from 43 to 26 frames/s (measured with benchmarks/video.py clips)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # `--threads` sets both runtimes (threads.py), so the two share one setting
    options.intra_op_num_threads = threads or runtime_threads.runtime_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def parse_contract(preprocess: str, meta: str, path: Path) -> tuple[Preprocess, dict]:
    """The embedded preprocessing contract and metadata (JSON strings) of an exported file."""
    try:
        return contract_from_dict(json.loads(preprocess), path), json.loads(meta) if meta else {}
    except ValueError as exc:  # JSON that does not parse
        raise FkdError(f"{path}: its fkd metadata is damaged ({exc})") from None


def contract_from_dict(data, path: Path) -> Preprocess:
    """A model file's preprocessing contract, or one line saying the file is damaged."""
    try:
        return Preprocess.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise FkdError(f"{path}: its fkd metadata is damaged ({exc})") from None


def load_onnx(path: Path, threads: int = 0) -> tuple[OnnxBackend, Preprocess, dict]:
    need_onnx(runtime_only=True)
    check_model_path(path)
    try:
        session = ort_session(str(path), threads)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise FkdError(f"{path}: not a readable ONNX model (corrupt or truncated: {str(exc).splitlines()[0][:120]})") from None
    props = session.get_modelmeta().custom_metadata_map
    if PREPROCESS_KEY not in props:
        raise FkdError(f"{path}: an ONNX model, but not one exported by `fkd export` (no {PREPROCESS_KEY} metadata)")
    pp, meta = parse_contract(props[PREPROCESS_KEY], props.get(META_KEY, ""), path)
    return OnnxBackend(session), pp, meta


def torchscript_contract(path: Path) -> tuple[Preprocess, dict]:
    """fkd's metadata, read from the TorchScript archive as a plain zip: nothing in it runs."""
    check_model_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = {Path(n).name: n for n in archive.namelist() if Path(n).parent.name == "extra"}
            if f"{PREPROCESS_KEY}.json" not in names:
                raise FkdError(f"{path}: a TorchScript archive, but not one exported by `fkd export` (no preprocessing metadata)")
            preprocess = archive.read(names[f"{PREPROCESS_KEY}.json"]).decode("utf-8")
            meta = archive.read(names[f"{META_KEY}.json"]).decode("utf-8") if f"{META_KEY}.json" in names else ""
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise FkdError(f"{path}: not a readable TorchScript model ({exc})") from None
    return parse_contract(preprocess, meta, path)


def load_torchscript(path: Path, device, trust_code: bool = False) -> tuple[TorchBackend, Preprocess, dict]:
    pp, meta = torchscript_contract(path)
    if not trust_code:
        raise FkdError(
            f"{path}: TorchScript files are programs and loading one runs code from it; pass --trust-code "
            f"(Python: trust_code=True) only for a file from a source you trust, or use its .onnx export"
        )
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError or ValueError on non-TorchScript files
        raise FkdError(f"{path}: not a readable TorchScript model ({str(exc).splitlines()[0][:120]})") from None
    return TorchBackend(module, device, name="torchscript"), pp, meta


def load_pth(path: Path, device) -> tuple[TorchBackend, Preprocess, dict]:
    """A `.pth` checkpoint as an eager PyTorch backend, BatchNorm folded into the convs."""
    from .checkpoint import build_from_checkpoint, load_checkpoint
    from .models import fuse_for_inference

    data = load_checkpoint(path)
    pp = contract_from_dict(data["preprocess"], path)
    model = fuse_for_inference(build_from_checkpoint(data, path))
    info = {"arch": data["arch"], "metrics": data.get("metrics", {}), "config": data.get("config", {})}
    return TorchBackend(model, device), pp, info


def load_backend(path: Path, device: str = "auto", trust_code: bool = False, threads: int = 0):
    """(backend, preprocessing contract, info) for any model file fkd reads, chosen by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return load_onnx(path, threads)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return load_torchscript(path, pick_device(device), trust_code)
    return load_pth(path, pick_device(device))
