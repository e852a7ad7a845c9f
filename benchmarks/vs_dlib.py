"""fkd against dlib as whole processes, side by side in one run, on photos like people's: 640x480 to
1024x768, each with 1 to 3 faces (dev `test/` faces, 90 to 240 px, pasted at random places), known
ground truth for every face.

    python benchmarks/vs_dlib.py --data-dir data [--photos 150] [--recrop-tta]

Times `fkd predict PHOTOS --no-draw --json F --quiet` and a dlib script (HOG detector upsampled once,
68-point shape predictor, JSON out) as separate processes, start-up included, and reports photos/s,
the ratio, faces found and NME over all faces (a missed face counts at the mean-shape error of the
data set, 28.3%, so missing is never cheaper than a bad guess). With `--recrop-tta`, `fkd predict
--recrop-tta` (the accurate mode) runs as a third process in the same run. Needs `pip install 'fkd[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MISSED_NME = 0.283  # the mean-shape guess on this data (README, Accuracy)

DLIB_SCRIPT = r"""
import json, sys
import dlib, numpy as np
from PIL import Image
detector, shapes = dlib.get_frontal_face_detector(), dlib.shape_predictor(sys.argv[1])
out = {}
for path in sys.argv[3:]:
    grey = np.asarray(Image.open(path).convert("L"))
    out[path] = [[[p.x, p.y] for p in shapes(grey, rect).parts()] for rect in detector(grey, 1)]
json.dump(out, open(sys.argv[2], "w"))
"""


def build(data_dir: Path, folder: Path, count: int, seed: int) -> dict:
    """Write `count` photos into `folder`; returns {path: [(68, 2) ground truth, ...]}."""
    from PIL import Image

    from fkd_cli.data import read_split

    split = read_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    truth = {}
    for n in range(count):
        width, height = int(rng.integers(640, 1025)), int(rng.integers(480, 769))
        canvas = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(30, 200, 3)))
        noise = rng.normal(0, 6, (height, width, 3))
        canvas = Image.fromarray(np.clip(np.asarray(canvas) + noise, 0, 255).astype(np.uint8))
        faces, taken = [], []
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(split.paths)))
            frame = Image.open(split.paths[i]).convert("RGB")
            points = split.keypoints[i].numpy()
            side = float((points.max(0) - points.min(0)).max())
            scale = rng.uniform(90, 240) / side  # face (landmark box) of 90-240 px
            frame = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))))
            if frame.width >= width or frame.height >= height:
                continue
            for _ in range(20):  # a free place, so that no face covers another
                x, y = int(rng.integers(0, width - frame.width)), int(rng.integers(0, height - frame.height))
                box = (x, y, x + frame.width, y + frame.height)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in taken):
                    canvas.paste(frame, (x, y))
                    taken.append(box)
                    faces.append(points * scale + np.array([x, y]))
                    break
        path = folder / f"photo{n:03d}.jpg"
        canvas.save(path, quality=92)
        truth[str(path)] = faces
    return truth


def score(truth: dict, predicted: dict) -> tuple[float, int, int]:
    """NME over all ground-truth faces (nearest prediction by centre; misses at MISSED_NME), found, total."""
    errors, found = [], 0
    for path, faces in truth.items():
        guesses = [np.asarray(g, dtype=np.float64) for g in predicted.get(path, [])]
        for gt in faces:
            iod = np.linalg.norm(gt[36] - gt[45])
            close = [g for g in guesses if np.linalg.norm(g.mean(0) - gt.mean(0)) < iod]
            if not close:
                errors.append(MISSED_NME)
                continue
            found += 1
            errors.append(min(np.linalg.norm(g - gt, axis=1).mean() / iod for g in close))
    return float(np.mean(errors)), found, sum(len(f) for f in truth.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recrop-tta", action="store_true", help="also time fkd predict --recrop-tta")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from dlib_reference import model_path

    dlib_model = model_path()
    if dlib_model is None:
        raise SystemExit("dlib or its 68-point model is not installed (pip install 'fkd[bench]')")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        truth = build(args.data_dir, folder, args.photos, args.seed)
        photos = sorted(str(p) for p in folder.iterdir())
        runs = {}
        outputs = {name: Path(tmp) / f"{name}.json" for name in ("fkd", "fkd-tta", "dlib")}
        fkd = [sys.executable, "-m", "fkd_cli", "predict", str(folder), "--no-draw", "--quiet", "--json"]
        commands = [("fkd", [*fkd, str(outputs["fkd"])])]
        if args.recrop_tta:
            commands.append(("fkd-tta", [*fkd, str(outputs["fkd-tta"]), "--recrop-tta"]))
        commands.append(("dlib", [sys.executable, "-c", DLIB_SCRIPT, str(dlib_model), str(outputs["dlib"]), *photos]))
        for name, command in commands:
            started = time.perf_counter()
            subprocess.run(command, check=False, capture_output=True)
            runs[name] = time.perf_counter() - started
        predictions = {name: {item["path"]: [f["keypoints"] for f in item["faces"]]
                              for item in json.loads(outputs[name].read_text())["images"]}
                       for name, _ in commands if name != "dlib"}
        predictions["dlib"] = json.loads(outputs["dlib"].read_text())
    faces = sum(len(f) for f in truth.values())
    print(f"{args.photos} photos, 640x480 to 1024x768, {faces} faces; whole processes, start-up included")
    print(f"{'tool':<10} {'seconds':>8} {'photos/s':>9} {'found':>9} {'NME (all faces)':>16}")
    for name, predicted in predictions.items():
        nme, found, total = score(truth, predicted)
        print(f"{name:<10} {runs[name]:>8.1f} {args.photos / runs[name]:>9.1f} {found:>4}/{total:<4} {100 * nme:>15.2f}%")
    print(f"fkd / dlib throughput: {runs['dlib'] / runs['fkd']:.2f}x")
    if "fkd-tta" in runs:
        print(f"fkd --recrop-tta / dlib throughput: {runs['dlib'] / runs['fkd-tta']:.2f}x; "
              f"its time over fkd's: {runs['fkd-tta'] / runs['fkd']:.2f}x")


if __name__ == "__main__":
    main()
