"""ONNX and TorchScript export with the preprocessing contract embedded, and a parity check.
`backends.py` reads the files back (`fkd predict --model model.onnx`)."""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import build_from_checkpoint, load_checkpoint
from .digest import sha256_of  # records the checkpoint an export was made from
from .errors import FkdError
from .framing import Preprocess, crop, outputs_to_crop_points, to_input
from .outputs import atomic_write, check_output_file
from .backends import META_KEY, PREPROCESS_KEY, OnnxBackend, TorchBackend, bundled_model_path, need_onnx, ort_session

TOLERANCE_PX = 1e-3
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


@dataclass
class ExportResult:
    path: Path
    format: str
    parity: list[dict] = field(default_factory=list)


def check_inputs(pp: Preprocess, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Inputs for the parity check: random tensors, and crops cut by the real preprocessing path
    out of images with face-like structure (smooth shading, edges), batch 1 and batch > 1."""
    g = torch.Generator().manual_seed(seed)
    size = pp.input_size
    random = torch.randn(8, pp.channels, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 240), torch.linspace(-1, 1, 320), indexing="ij")
    images = []
    for k in range(8):
        cx, cy = float(torch.rand((), generator=g)) * 0.6 - 0.3, float(torch.rand((), generator=g)) * 0.6 - 0.3
        face = ((xx - cx) ** 2 / 0.2 + (yy - cy) ** 2 / 0.35 < 1).float()
        eyes = (((xx - cx).abs() - 0.15) ** 2 + (yy - cy + 0.15) ** 2 < 0.004).float()
        shade = 0.5 + 0.3 * xx * (k % 3 - 1) + 0.2 * face - 0.4 * eyes
        noise = 0.03 * torch.randn(3, 240, 320, generator=g)
        images.append(((shade[None] + noise).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy())
    boxes = [(100 + 5 * k, 60 + 3 * k, 120 + 4 * k) for k in range(8)]
    real = to_input(np.stack([crop(img, box, size)[0] for img, box in zip(images, boxes)]), pp)
    random = random.numpy()
    return [("random", random[:1]), ("random", random), ("image crops", real[:1]), ("image crops", real)]


def parity(reference: torch.nn.Module, backend, pp: Preprocess) -> list[dict]:
    """Max / mean absolute difference in crop keypoint pixels between PyTorch and the export."""
    rows = []
    with torch.inference_mode():
        for name, x in check_inputs(pp):
            expected = outputs_to_crop_points(reference(torch.from_numpy(x)).numpy(), pp)
            got = outputs_to_crop_points(backend(x), pp)
            diff = np.abs(expected - got)
            rows.append({"input": name, "batch": len(x), "max": float(diff.max()), "mean": float(diff.mean())})
    return rows


def _default_out(model_path: Path | None, fmt: str) -> Path:
    if model_path is None:
        return Path.cwd() / f"fkd-default{SUFFIXES[fmt]}"
    return model_path.with_suffix(SUFFIXES[fmt])


def export_model(model_path: Path | None, fmt: str = "onnx", out: Path | None = None, opset: int = 17,
                 check: bool = True) -> list[ExportResult]:
    """Export a `.pth` checkpoint (None = bundled model); returns what was written and its parity rows."""
    if fmt not in ("onnx", "torchscript", "all"):
        raise FkdError(f"unknown export format '{fmt}'; choose onnx, torchscript or all")
    source = model_path or bundled_model_path()
    if source.suffix.lower() != ".pth":
        raise FkdError(f"{source}: export takes a .pth checkpoint (from `fkd train`)")
    formats = ["onnx", "torchscript"] if fmt == "all" else [fmt]
    if "onnx" in formats:
        need_onnx()
    targets = {f: _default_out(model_path, f) if out is None else (out.with_suffix(SUFFIXES[f]) if fmt == "all" else out)
               for f in formats}
    for target in targets.values():  # every output checked before any work
        check_output_file(target, "--out")
    data = load_checkpoint(source)
    model = build_from_checkpoint(data, source)
    pp = Preprocess.from_dict(data["preprocess"])
    meta = {"arch": data["arch"], "fkd_version": __version__, "source": str(source), "metrics": data.get("metrics", {}),
            "config": data.get("config", {}), "source_sha256": sha256_of(source)}
    results = []
    for f, target in targets.items():
        writer = _write_onnx if f == "onnx" else _write_torchscript
        results.append(writer(model, pp, meta, target, opset, check))
    return results


def _write_onnx(model, pp: Preprocess, meta: dict, target: Path, opset: int, check: bool) -> ExportResult:
    import onnx

    dummy = torch.zeros(1, pp.channels, pp.input_size, pp.input_size)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the TorchScript-based exporter warns that it is the old one
            warnings.simplefilter("ignore")
            torch.onnx.export(model, dummy, buffer, input_names=["input"], output_names=["keypoints"],
                              dynamic_axes={"input": {0: "batch"}, "keypoints": {0: "batch"}}, opset_version=opset,
                              dynamo=False)
    except Exception as exc:  # the exporter's errors are many and varied
        raise FkdError(f"ONNX export failed at opset {opset}: {str(exc).splitlines()[0][:200]}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in ((PREPROCESS_KEY, json.dumps(pp.to_dict())), (META_KEY, json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    blob = proto.SerializeToString()
    result = ExportResult(target, "onnx")
    if check:
        result.parity = parity(model, OnnxBackend(ort_session(blob)), pp)
        _enforce(result)
    # written only once checked: a file that failed the check is never left behind as if good
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(blob))
    return result


def _write_torchscript(model, pp: Preprocess, meta: dict, target: Path, opset: int, check: bool) -> ExportResult:
    dummy = torch.zeros(2, pp.channels, pp.input_size, pp.input_size)
    with torch.no_grad(), warnings.catch_warnings():  # TorchScript is deprecated upstream, still what C++/mobile load
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, dummy, check_trace=False)
    extra = {f"{PREPROCESS_KEY}.json": json.dumps(pp.to_dict()), f"{META_KEY}.json": json.dumps(meta)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, buffer, _extra_files=extra)
    result = ExportResult(target, "torchscript")
    if check:
        buffer.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(buffer)
        result.parity = parity(model, TorchBackend(loaded, torch.device("cpu"), "torchscript"), pp)
        _enforce(result)
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return result


def _enforce(result: ExportResult) -> None:
    worst = max(row["max"] for row in result.parity)
    if worst > TOLERANCE_PX:
        raise FkdError(f"{result.format} export disagrees with PyTorch by {worst:.2e} keypoint pixels (> {TOLERANCE_PX}); "
                       f"{result.path} was not written")

