"""Network cost before training: multiply-adds, parameters and ONNX Runtime milliseconds a face for
candidate architectures, measured on untrained weights (the cost does not depend on their values).

    python benchmarks/arch_speed.py [--rounds 5] [--size 96] [--only fkdnet-integral ...]

(--size sets the crop of the candidates without one of their own; the 128-px candidate is the bundled
network's cost spent on resolution instead of width.)

Each candidate is built by name (`fkd_cli.models`), its BatchNorms folded as inference does, exported to
ONNX in memory and run by ONNX Runtime on one thread at batch 2: one face with flip TTA, as the default
path runs it. The candidates take turns in every round (this machine's speed drifts); each figure is
the median over rounds of the mean of 100 calls.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings

import numpy as np

CANDIDATES = (  # (label, model name, width, crop size or None for --size): the bundled network first
    ("fkdnet, width 32 (bundled)", "fkdnet", 32, None),
    ("fkdnet, width 24", "fkdnet", 24, None),
    ("fkdnet-sep, width 32", "fkdnet-sep", 32, None),
    ("fkdnet-sep, width 48", "fkdnet-sep", 48, None),
    ("fkdnet-sep, width 64", "fkdnet-sep", 64, None),
    ("fkdnet-hybrid, width 32", "fkdnet-hybrid", 32, None),
    ("fkdnet, width 24, 128 px", "fkdnet", 24, 128),
    ("fkdnet-integral, width 32", "fkdnet-integral", 32, None),
    ("fkdnet-hm, width 32 (as trained)", "fkdnet-hm", 32, None),
    ("fkdnet-hm, width 20", "fkdnet-hm", 20, None),
)


def multiply_adds(model, size: int) -> int:
    import torch
    from torch import nn

    total = 0

    def count(module, _, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def session(model, size: int):
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 3, size, size), buffer, input_names=["input"],
                          dynamic_axes={"input": {0: "n"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="these model names only (the first row still first)")
    args = parser.parse_args()

    import torch

    from fkd_cli.models import FKDNET_FAMILY, build_model, fuse_for_inference

    torch.set_num_threads(1)
    rows = []
    candidates = [c for i, c in enumerate(CANDIDATES) if i == 0 or not args.only or c[1] in args.only]
    for label, name, width, size in candidates:
        size = size or args.size
        head = {"hidden": 256} if name in FKDNET_FAMILY else {}  # the heatmap networks have no regression head
        model = build_model(name, 68, in_channels=3, input_size=size, dropout=0.0, width=width, **head).eval()
        x = np.random.default_rng(0).normal(0, 1, (2, 3, size, size)).astype(np.float32)
        rows.append([label, multiply_adds(model, size), sum(p.numel() for p in model.parameters()),
                     session(fuse_for_inference(model), size), [], x])
    for _ in range(args.rounds):
        for row in rows:
            run, x = row[3], row[5]
            for _ in range(10):
                run.run(None, {"input": x})
            started = time.perf_counter()
            for _ in range(100):
                run.run(None, {"input": x})
            row[4].append(1000 * (time.perf_counter() - started) / 100)
    base = statistics.median(rows[0][4])
    print(f"{args.size}-px crops unless named, one face = 2 crops (flip TTA), ONNX Runtime, one thread, median of {args.rounds} rounds")
    print(f"{'network':<28} {'M MACs/crop':>11} {'M params':>9} {'ms/face':>8} {'speed-up':>9}")
    for label, macs, params, _, times, _ in rows:
        ms = statistics.median(times)
        print(f"{label:<28} {macs / 1e6:>11.1f} {params / 1e6:>9.2f} {ms:>8.3f} {base / ms:>8.2f}x")


if __name__ == "__main__":
    main()
