"""Is an int8 copy of the bundled model worth it? ONNX Runtime's static quantisation (QDQ, per-channel
int8 weights, uint8 activations) calibrated on 300 training crops and their mirror images, then: the
network's time for one face with flip TTA (a batch of 2, one thread), int8 against the shipped float
twin, alternated; and dev `test/` through `fkd evaluate`'s path with each.

    python benchmarks/int8.py --data-dir data
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build_int8(data_dir: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fkd_cli.backends import bundled_model_path
    from fkd_cli.checkpoint import load_checkpoint
    from fkd_cli.config import resolve_config
    from fkd_cli.data import ImageCache, KeypointDataset, read_split
    from fkd_cli.framing import Preprocess

    source = bundled_model_path().with_suffix(".onnx")
    pp = Preprocess.from_dict(load_checkpoint(bundled_model_path())["preprocess"])
    split = read_split(data_dir, "training")
    split = split.subset(list(range(0, len(split.paths), 9)), "training")  # calibration: training images only
    crops = KeypointDataset(ImageCache(split.paths).load_all(), split.keypoints, pp, resolve_config("fkd-best"), train=False)
    inputs = [crops[i][0][None].numpy() for i in range(len(crops))]
    inputs += [x[..., ::-1].copy() for x in inputs]  # flip TTA feeds mirrored crops too

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x} for x in inputs])

        def get_next(self):
            return next(self.items, None)

    prepared, raw = out.with_name("prepared.onnx"), out.with_name("raw-int8.onnx")
    quant_pre_process(str(source), str(prepared))
    quantize_static(str(prepared), str(raw), Crops(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    model, original = onnx.load(str(raw)), onnx.load(str(source))
    del model.metadata_props[:]
    for prop in original.metadata_props:  # the preprocessing contract travels with the weights
        model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, str(out))
    return source


def ms_per_face(paths: list[Path], rounds: int = 5, repeats: int = 100) -> list[float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths]
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 96, 96)).astype(np.float32)
    times = [[] for _ in paths]
    for _ in range(rounds):  # alternated, so the machine's load falls on both alike
        for session, bucket in zip(sessions, times):
            for _ in range(10):
                session.run(None, {"input": x})
            started = time.perf_counter()
            for _ in range(repeats):
                session.run(None, {"input": x})
            bucket.append(1000 * (time.perf_counter() - started) / repeats)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()

    from fkd_cli.evaluate import evaluate_model

    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "fkd-default-int8.onnx"
        source = build_int8(args.data_dir, int8)
        float_ms, int8_ms = ms_per_face([source, int8])
        print(f"network, one face with flip TTA (batch 2, one thread): float {float_ms:.2f} ms, int8 {int8_ms:.2f} ms "
              f"({float_ms / int8_ms:.2f}x)")
        for label, path in (("float", source), ("int8", int8)):
            report, _ = evaluate_model(path, args.data_dir)
            print(f"{label:5s} dev test: NME {100 * report['nme']:.2f}%, median {100 * report['nme_median']:.2f}%, "
                  f"FR@10% {100 * report['fr_10']:.2f}%, missed {report['missed']}")


if __name__ == "__main__":
    main()
