"""The default face detector's speed and recall on three kinds of photo: dev `test/` frames (about
300x300), the pasted-faces photos (960x720) and the same photos shrunk to 640x480. Milliseconds a photo
on one thread, each photo's fastest of `--repeats` runs; faces found (the detection that holds the
annotated face, as `fkd evaluate` matches it).

    python benchmarks/detector_speed.py --data-dir data --pasted pasted
    git worktree add /tmp/fkd-old REV
    python benchmarks/detector_speed.py --data-dir data --pasted pasted --against /tmp/fkd-old

With `--against`, the fkd_cli of that checkout is loaded beside this one (as a second package, so its
code runs, with its own detector network files) and the two detectors take turns on every
photo, in alternating order: on a shared machine whose speed drifts by 30% from minute to minute, only
timings taken side by side like this give a ratio that means something.
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import sys
import types
import time
from pathlib import Path


def load_other_package(root: Path, name: str = "fkd_other"):
    """fkd_cli of another checkout under another name (its imports inside are relative)."""
    init = root.resolve() / "fkd_cli" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--against {root}: no fkd_cli/__init__.py there (give the root of an fkd checkout)")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # its detector's network files are its own (they change with the code): `resources.files("fkd_cli")`
    # inside it would find this checkout's installed package, so it is pointed at its own folder
    mtcnn = importlib.import_module(f"{name}.mtcnn")
    mtcnn.resources = types.SimpleNamespace(files=lambda package: init.parent, as_file=importlib.resources.as_file)
    return importlib.import_module(f"{name}.detect"), importlib.import_module(f"{name}.images")


def image_layout(images_module):
    """A checkout from before the torch-free predict path takes CHW uint8 tensors; later ones HWC numpy."""
    returns = str(images_module.decode_image.__annotations__.get("return", ""))
    if "Tensor" not in returns:
        return lambda image: image
    import torch

    return lambda image: torch.from_numpy(image).permute(2, 0, 1).contiguous()


def fastest_ms(detector, image, repeats: int):
    best, detections = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        detections = detector.detect(image)
        best = min(best, time.perf_counter() - started)
    return 1000 * best, detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--pasted", type=Path, default=Path("pasted"), help="made by benchmarks/pasted_faces.py (built here if missing)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="runs a photo; its fastest counts")
    parser.add_argument("--against", type=Path, default=None, help="another fkd checkout to time side by side")
    args = parser.parse_args()

    from detector_settings import photo_sets
    from fkd_cli.detect import build_detector, match_detection
    from fkd_cli.threads import set_threads

    set_threads(1)
    detectors = {"this": build_detector("mtcnn")}
    layouts = {"this": lambda image: image}
    if args.against is not None:
        import torch

        torch.set_num_threads(1)  # the other checkout's sessions follow PyTorch's setting
        other_detect, other_images = load_other_package(args.against)
        detectors[str(args.against)] = other_detect.build_detector("mtcnn")
        layouts[str(args.against)] = image_layout(other_images)
    print(f"one thread, fastest of {args.repeats} runs a photo; " + ", ".join(f"'{k}'" for k in detectors))
    for label, photos in photo_sets(args.data_dir, args.pasted, args.images):
        found = dict.fromkeys(detectors, 0)
        total = dict.fromkeys(detectors, 0.0)
        for n, (image, points) in enumerate(photos):
            order = list(detectors) if n % 2 == 0 else list(reversed(detectors))
            for name in order:
                ms, detections = fastest_ms(detectors[name], layouts[name](image), args.repeats)
                total[name] += ms
                found[name] += match_detection(detections, points) is not None
        line = "  ".join(f"{name}: found {found[name]}/{len(photos)} {total[name] / len(photos):6.1f} ms" for name in detectors)
        if len(detectors) == 2:
            this, other = total.values()
            line += f"  (this is {other / this:.2f}x as fast)"
        print(f"  {label:26s} {line}")


if __name__ == "__main__":
    main()
