"""MTCNN's three ONNX files one by one, and the PReLU op they were rewritten around.

    git worktree add /tmp/fkd-old REV
    python benchmarks/detector_stages.py --against /tmp/fkd-old

Times P-Net on one 192 x 144 pyramid level (the first level of a 640x480 photo from 40-px faces), R-Net on
40 candidate boxes and O-Net on 8 of a 640x480 photo, each file of this checkout and of the other one
taking turns (this machine's speed drifts), one thread, median over rounds of the mean of 30 calls.
Without `--against` only this checkout's files are timed. Then ONNX Runtime's `PRelu` against the
formulations `tools/export_mtcnn.py` writes instead (`Max(x, a * x)`; `x + (a - 1) * min(x, 0)`) on
P-Net's first activation (10 x 142 x 190 values).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROUNDS, CALLS = 7, 30


def session(model):
    """A one-thread session made as the detector makes its own (fkd's one ONNX Runtime set-up)."""
    from fkd_cli.backends import ort_session

    return ort_session(model, threads=1)


def interleaved(sessions: dict, feed: dict) -> dict:
    """Milliseconds a call of each session, the sessions taking turns in every round."""
    times = {name: [] for name in sessions}
    for _ in range(ROUNDS):
        for name, run in sessions.items():
            for _ in range(5):
                run.run(None, feed)
            started = time.perf_counter()
            for _ in range(CALLS):
                run.run(None, feed)
            times[name].append(1000 * (time.perf_counter() - started) / CALLS)
    return {name: statistics.median(values) for name, values in times.items()}


def stage_feeds(rng) -> dict:
    photo = rng.uniform(0, 255, (1, 3, 480, 640)).astype(np.float32)
    corners = rng.uniform(0, 400, (40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(40, 160, (40, 1))], axis=1).astype(np.float32)
    return {"pnet": {"x": rng.normal(0, 1, (1, 3, 144, 192)).astype(np.float32)},
            "rnet": {"image": photo, "boxes": boxes}, "onet": {"image": photo, "boxes": boxes[:8]}}


def prelu_graphs(slope: np.ndarray, shape) -> dict:
    from onnx import TensorProto, helper, numpy_helper

    graphs = {
        "PRelu (ONNX Runtime's op)": [helper.make_node("PRelu", ["x", "a"], ["y"])],
        "Max(x, a * x) (slopes <= 1)": [helper.make_node("Mul", ["x", "a"], ["ax"]), helper.make_node("Max", ["x", "ax"], ["y"])],
        "x + (a - 1) * min(x, 0)": [helper.make_node("Min", ["x", "zero"], ["m"]), helper.make_node("Mul", ["m", "a1"], ["am"]),
                                    helper.make_node("Add", ["x", "am"], ["y"])],
    }
    constants = [numpy_helper.from_array(slope, "a"), numpy_helper.from_array(slope - 1, "a1"),
                 numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    models = {}
    for name, nodes in graphs.items():
        used = {i for node in nodes for i in node.input}
        graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [c for c in constants if c.name in used])
        models[name] = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, default=None, help="another fkd checkout whose MTCNN files to time beside these")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent / "fkd_cli" / "assets"
    rng = np.random.default_rng(0)
    print(f"one thread, median of {ROUNDS} rounds of {CALLS} calls, ms a call")
    for stage, feed in stage_feeds(rng).items():
        sessions = {"this": session(str(here / f"mtcnn-{stage}.onnx"))}
        if args.against:
            sessions["other"] = session(str(args.against / "fkd_cli" / "assets" / f"mtcnn-{stage}.onnx"))
        ms = interleaved(sessions, feed)
        line = f"  {stage}: this {ms['this']:.2f}"
        if args.against:
            line += f", {args.against} {ms['other']:.2f} (this is {ms['other'] / ms['this']:.2f}x as fast)"
        print(line)

    from fkd_cli.mtcnn_nets import load_networks

    slope = load_networks()[0].prelu1.weight.detach().numpy().reshape(-1, 1, 1)
    slope = np.minimum(slope, 1.0)  # so that all three graphs compute PReLU (the max needs slopes <= 1)
    shape = (1, len(slope), 142, 190)
    x = rng.normal(0, 1, shape).astype(np.float32)
    expected = np.where(x > 0, x, x * slope)
    models = prelu_graphs(slope.astype(np.float32), shape)
    for name, run in models.items():
        assert np.allclose(run.run(None, {"x": x})[0], expected, atol=1e-5), name
    ms = interleaved(models, {"x": x})
    print(f"PReLU on P-Net's first activation {shape}:")
    for name, value in ms.items():
        print(f"  {name:<30} {value:.3f}")


if __name__ == "__main__":
    main()
