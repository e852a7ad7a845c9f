"""Inference speed on one CPU core: model-only ms per face (batch 1 and 32) for each backend, and
end-to-end photos per second (decode, face detection, crop, model, mapping back), and each face
detector's time a photo (MTCNN, the default, and OpenCV's Haar cascades).

    python benchmarks/predict_speed.py [--model PATH] [--images DIR] [--threads 1] [--recrop-tta]

All backends are measured in this one run, so their ratio is meaningful on a noisy machine, and so is
dlib (HOG detector + 68-point shape predictor) when `fkd[bench]` is installed; without it the script
says so and prints no ratio to dlib.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dlib_reference import load as load_dlib


def per_call_ms(fn, x, repeats: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def alternated(first, second, x, repeats: int, calls: int, rounds: int = 5) -> tuple[float, float]:
    """Median ms a face of two predictors timed in turns (so a drifting machine slows both alike)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(per_call_ms(first.run_inputs, x, repeats) * calls)
        b.append(per_call_ms(second.run_inputs, x, repeats) * calls)
    return statistics.median(a), statistics.median(b)


def without_doubt_head(model: Path | None, folder: Path, threads: int):
    """An ONNX predictor for the same network without its doubt head (the landmarks are the same)."""
    from fkd_cli.backends import bundled_model_path
    from fkd_cli.checkpoint import update_checkpoint
    from fkd_cli.export import export_model
    from fkd_cli.inference import load_predictor

    plain = folder / "headless.pth"
    update_checkpoint(model or bundled_model_path(), plain, preprocess={"doubt_head": False}, extra={"doubt_head": None})
    (exported,) = export_model(plain, "onnx", folder / "headless.onnx", check=False)
    return load_predictor(exported.path, threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help=".pth checkpoint; default: the bundled model")
    parser.add_argument("--images", type=Path, default=Path("data/test"), help="photos for the end-to-end figure")
    parser.add_argument("--limit", type=int, default=100, help="photos to time end to end")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--recrop-tta", action="store_true", help="the accurate mode, as fkd predict --recrop-tta")
    args = parser.parse_args()
    from fkd_cli.threads import set_threads

    torch.set_num_threads(args.threads)
    set_threads(args.threads)

    from fkd_cli.export import export_model
    from fkd_cli.inference import load_predictor

    torch_predictor = load_predictor(args.model, device="cpu", backend="pytorch").configured(recrop_tta=args.recrop_tta or None)
    pp = torch_predictor.pp
    passes = 1 + pp.refine_steps + pp.recrop_tta  # crops a face goes through; flip TTA doubles the network calls of each
    calls = passes * (2 if pp.flip_tta else 1)
    with tempfile.TemporaryDirectory() as tmp:
        (exported,) = export_model(args.model, "onnx", Path(tmp) / "m.onnx", check=False)
        onnx_predictor = load_predictor(exported.path, threads=args.threads).configured(recrop_tta=args.recrop_tta or None)
        headless = without_doubt_head(args.model, Path(tmp), args.threads) if pp.doubt_head else None
    backends = {"pytorch": torch_predictor, "onnxruntime": onnx_predictor}

    print(f"model: {torch_predictor.source} ({torch_predictor.info.get('arch')}, input {pp.input_size}px, "
          f"{passes} crop{'s' if passes > 1 else ''} a face, flip TTA {'on' if pp.flip_tta else 'off'}: "
          f"{calls} network pass{'es' if calls > 1 else ''} a face), {args.threads} thread(s)")
    paths = sorted(p for p in args.images.glob("*") if p.is_file())[: args.limit]
    from fkd_cli.images import read_image

    images = [read_image(p) for p in paths]
    dlib_tools = load_dlib()
    dlib_face_ms = measure_dlib_faces(dlib_tools, images, args.repeats) if not isinstance(dlib_tools, str) else None
    if dlib_face_ms is None:
        print(dlib_tools if isinstance(dlib_tools, str) else "dlib found no face to time")
    else:
        print(f"dlib 68-point shape predictor: {dlib_face_ms:.3f} ms a face (same run, one thread)")
    print(f"{'backend':<12} {'batch':>5} {'ms/crop':>8} {'ms/face':>8} {'dlib/ours':>10}")
    results = {}
    for name, predictor in backends.items():
        for batch in (1, 32):
            x = torch.randn(batch, pp.channels, pp.input_size, pp.input_size).numpy()
            ms = per_call_ms(predictor.run_inputs, x, args.repeats if batch == 1 else max(5, args.repeats // 5)) / batch
            face_ms = ms * passes
            results[(name, batch)] = face_ms
            ratio = f"{dlib_face_ms / face_ms:>9.2f}x" if dlib_face_ms else f"{'-':>10}"
            print(f"{name:<12} {batch:>5} {ms:>8.3f} {face_ms:>8.3f} {ratio}")
    for batch in (1, 32):
        print(f"onnxruntime speed-up over pytorch at batch {batch}: "
              f"{results[('pytorch', batch)] / results[('onnxruntime', batch)]:.2f}x")
    x = torch.randn(1, pp.channels, pp.input_size, pp.input_size).numpy()
    if pp.flip_tta:  # what one pass a face (a model that needs no flip TTA) would cost, taking turns
        single, both = alternated(onnx_predictor.configured(flip_tta=False), onnx_predictor, x, args.repeats, passes)
        print(f"onnxruntime, batch 1, without flip TTA: {single:.3f} ms a face against {both:.3f} with it "
              f"({both / single:.2f}x), alternated")
    if headless is not None:  # what the doubt head adds to a network call, taking turns
        with_head, without = alternated(onnx_predictor, headless, x, args.repeats, calls)
        print(f"onnxruntime, batch 1, with the doubt head: {with_head:.3f} ms a face against {without:.3f} without it "
              f"({with_head / without:.3f}x), alternated")

    if not paths:
        print(f"(no photos in {args.images}: end-to-end figure skipped)")
        return
    from fkd_cli.detect import build_detector

    for detector_name in ("mtcnn", "haar"):
        detector = build_detector(detector_name)
        start = time.perf_counter()
        for image in images:
            detector.detect(image)
        detect_ms = 1000 * (time.perf_counter() - start) / len(images)
        print(f"{detector_name} detection alone: {detect_ms:.1f} ms a photo")
    print(f"end to end below uses the model's own detector: {torch_predictor.detector.name}")
    for name, predictor in backends.items():
        start = time.perf_counter()
        faces = sum(len(predictor.predict_faces(read_image(path))) for path in paths)
        seconds = time.perf_counter() - start
        print(f"end to end ({name}): {len(paths) / seconds:.1f} photos/s over {len(paths)} photos "
              f"(decode + detect + {calls} network passes a face), {faces} faces")
    if not isinstance(dlib_tools, str):
        detector, shapes = dlib_tools
        start = time.perf_counter()
        faces = 0
        for path in paths:
            array = grey_of(read_image(path))
            for rect in detector(array, 1):  # upsample once, as dlib's examples and face_recognition do
                shapes(array, rect)
                faces += 1
        seconds = time.perf_counter() - start
        print(f"end to end (dlib HOG + 68 points): {len(paths) / seconds:.1f} photos/s, {faces} faces")


def grey_of(image):
    """dlib's input: the photo (H, W, 3 uint8 RGB) in grey, as our Haar detector converts it."""
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def measure_dlib_faces(tools, images, repeats: int) -> float | None:
    """dlib's shape predictor alone, ms a face, on the faces its own detector finds."""
    import dlib

    detector, shapes = tools
    jobs = []
    for image in images[:20]:
        grey = grey_of(image)
        jobs += [(grey, rect) for rect in detector(grey, 1)]
    if not jobs:
        return None
    times = []
    for _ in range(max(1, repeats // 10)):
        start = time.perf_counter()
        for grey, rect in jobs:
            shapes(grey, dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom()))
        times.append((time.perf_counter() - start) / len(jobs))
    return 1000 * statistics.median(times)


if __name__ == "__main__":
    main()
