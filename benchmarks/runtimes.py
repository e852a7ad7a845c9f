"""Other CPU runtimes against ONNX Runtime for the bundled network: is the runtime the lever for a
faster face?

    python benchmarks/runtimes.py [--model fkd_cli/assets/fkd-default.onnx] [--rounds 7]

Runs the ONNX twin of the bundled model on one thread (loaded as fkd loads it, `backends.load_onnx`: the
same ONNX Runtime session, and the crop its metadata names), one face with flip TTA (the crop and its mirror
image: one call at batch 2 where the runtime batches, two calls at batch 1 where it does not), on:
- ONNX Runtime (the default path's runtime),
- OpenVINO (`pip install openvino`), reading the same ONNX file, fp32,
- ncnn (`pip install ncnn pnnx`), the ONNX file converted by pnnx's command into a temporary folder,
  fp32 storage and arithmetic (its Winograd and packed-layout convolutions on, as by default).

None of the others is a dependency of fkd (install them beside it: `pip install openvino ncnn pnnx`); a
runtime that is not installed is reported and skipped. Every
runtime's outputs are compared with ONNX Runtime's first (largest difference, in target units). The
runtimes take turns in every round; each figure is the median over rounds of the mean of 200 faces.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def openvino_face(model: Path, crop: tuple[int, int, int]):
    import openvino as ov

    core = ov.Core()
    network = core.read_model(str(model))
    network.reshape([2, *crop])
    compiled = core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                                                   "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda pair: request.infer({0: pair})[0]


def ncnn_face(model: Path, folder: Path, crop: tuple[int, int, int]):
    import ncnn

    pnnx = shutil.which("pnnx") or str(Path(sys.executable).with_name("pnnx"))
    local = folder / "net.onnx"
    if not local.exists():
        shutil.copy(model, local)
        subprocess.run([pnnx, str(local), f"inputshape=[1,{','.join(map(str, crop))}]"], cwd=folder, check=True, capture_output=True)
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False  # same maths
    net.load_param(str(folder / "net.ncnn.param"))
    net.load_model(str(folder / "net.ncnn.bin"))

    def face(pair):
        outputs = []
        for crop in pair:  # ncnn runs one image a call
            extractor = net.create_extractor()
            extractor.input("in0", ncnn.Mat(np.ascontiguousarray(crop)))
            outputs.append(np.array(extractor.extract("out0")[1]).ravel())
        return np.stack(outputs)

    return face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "fkd_cli/assets/fkd-default.onnx")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from fkd_cli.backends import load_onnx

    # fkd's own loader: the session as the default path makes it, and the crop the file's contract names
    onnxruntime, pp, _ = load_onnx(args.model, threads=1)
    crop = (pp.channels, pp.input_size, pp.input_size)
    pair = np.random.default_rng(0).random((2, *crop), dtype=np.float32)
    folder = Path(tempfile.mkdtemp(prefix="fkd-runtimes-"))
    makers = {
        "onnxruntime": lambda: onnxruntime,
        "openvino fp32": lambda: openvino_face(args.model, crop),
        "ncnn fp32": lambda: ncnn_face(args.model, folder, crop),
    }
    runners = {}
    for name, make in makers.items():
        try:
            runners[name] = make()
        except (ImportError, FileNotFoundError, subprocess.CalledProcessError) as error:
            print(f"{name}: not measured ({type(error).__name__}: {error})")
    reference = runners["onnxruntime"](pair)
    for name, run in runners.items():
        print(f"{name}: largest output difference from onnxruntime {np.abs(run(pair) - reference).max():.2e}")

    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(200):
                run(pair)
            times[name].append((time.perf_counter() - start) / 200 * 1e3)
    base = statistics.median(times["onnxruntime"])
    print(f"\n{'runtime':<20} {'ms a face':>10} {'speed vs onnxruntime':>22}")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{name:<20} {ms:>10.3f} {base / ms:>21.2f}x")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
