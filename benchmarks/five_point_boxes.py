"""MTCNN's five points as a source of the first crop (an "Accuracy II" lever; README, Ablation).

fkd turns a detection into a crop through its box alone (a calibrated offset and scale, `DetectorRule`).
O-Net, MTCNN's last stage, also predicts five points (eye centres, nose tip, mouth corners), which say
where the face is inside the box. Here O-Net is run once more on each matched detection's box with its
five-point head, and a ridge regression from the box's aspect and the five points (in box widths from
the box centre) to the centre and log side of the 68 landmarks' box is fitted on a run's training faces
(the seeded split `fkd train` uses). Three steps, each reusing the first one's cache:

    python benchmarks/five_point_boxes.py --data-dir data measure        # detect once, cache, box errors
    python benchmarks/five_point_boxes.py --data-dir data train --seed 0 -- --config fkd-best --set threads=1 --out runs/five0
    python benchmarks/five_point_boxes.py --data-dir data evaluate --model runs/five0/model.pth --seed 0 [--split val]

`train` runs `fkd train` (the arguments after `--`, with `--data-dir` and `--set seed=` added) with the
five-point boxes as the detector's training crops (`detector_box_prob` of them) in place of the rule's;
`evaluate` runs `fkd evaluate`'s loop twice on the same detections, with the model's rule boxes and with
five-point boxes (the regression fitted on the same seed's training faces).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

RIDGE = 0.1  # the regression barely needs it (11 inputs, ~2400 faces); 0 and 1 gave the same errors


def landmark_box_centre_side(points: np.ndarray) -> tuple[np.ndarray, float]:
    low, high = points.min(0), points.max(0)
    return (low + high) / 2, float(max(high - low))


def features(box: np.ndarray, five: np.ndarray) -> np.ndarray:
    """The five points in box widths from the box centre, the box's aspect, and a constant."""
    width, height = box[2] - box[0], box[3] - box[1]
    centre = (box[:2] + box[2:]) / 2
    return np.concatenate([((five - centre) / width).reshape(-1), [height / width, 1.0]])


def targets(box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The landmark box's centre offset (box widths) and log side (over the box width)."""
    width = box[2] - box[0]
    centre, side = landmark_box_centre_side(keypoints)
    return np.concatenate([(centre - (box[:2] + box[2:]) / 2) / width, [np.log(side / width)]])


def fit(cache: dict, names, keypoints) -> np.ndarray:
    rows = [(cache[n], k) for n, k in zip(names, keypoints) if n in cache]
    x = np.stack([features(box, five) for (box, five, _), _ in rows])
    y = np.stack([targets(box, k) for (box, _, _), k in rows])
    return np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)


def predicted_box(box: np.ndarray, five: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """The landmark box's centre and side the regression predicts."""
    out = features(box, five) @ weights
    width = box[2] - box[0]
    return (box[:2] + box[2:]) / 2 + out[:2] * width, float(np.exp(out[2]) * width)


def five_points(onet, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """O-Net's five points (5, 2) for one box, in image pixels (its head gives them as box fractions,
    the five x then the five y)."""
    import torch
    from torchvision.ops import roi_align

    from fkd_cli.mtcnn_nets import NORM_MEAN, NORM_SCALE

    pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    crop = roi_align(pixels, torch.tensor([[0.0, *box]], dtype=torch.float32), 48, sampling_ratio=2, aligned=True)
    n = onet
    with torch.inference_mode():
        x = (crop - NORM_MEAN) * NORM_SCALE
        x = n.pool3(n.prelu3(n.conv3(n.pool2(n.prelu2(n.conv2(n.pool1(n.prelu1(n.conv1(x)))))))))
        x = n.prelu5(n.dense5(n.prelu4(n.conv4(x)).permute(0, 3, 2, 1).flatten(1)))
        fractions = n.dense6_3(x)[0].numpy()
    return np.stack([box[0] + fractions[:5] * (box[2] - box[0]), box[1] + fractions[5:] * (box[3] - box[1])], axis=1)


def measure_cache(data_dir: Path, path: Path) -> None:
    """MTCNN on every image of training/ and test/ (the matched detection, as calibration and
    evaluation take it), O-Net's five points on its box; written as plain arrays."""
    from fkd_cli.data import ImageCache, read_split
    from fkd_cli.detect import build_detector, match_detection
    from fkd_cli.mtcnn_nets import load_networks

    detector, onet = build_detector("mtcnn"), load_networks()[2]
    names, boxes, fives, scores = [], [], [], []
    for split in ("training", "test"):
        data = read_split(data_dir, split)
        images = ImageCache(data.paths)
        for i, image_path in enumerate(data.paths):
            found = match_detection(detector.detect(images[i]), data.keypoints[i])
            if found is None:
                continue
            box = np.array(found.box, dtype=np.float64)
            names.append(f"{split}/{image_path.name}")
            boxes.append(box)
            fives.append(five_points(onet, images[i], box))
            scores.append(found.score)
        print(f"{split}: {sum(n.startswith(split + '/') for n in names)} of {len(data.paths)} faces matched", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, names=np.array(names), boxes=np.stack(boxes), fives=np.stack(fives), scores=np.array(scores))


def load_cache(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"{path}: no cache yet; run the `measure` step first")
    data = np.load(path, allow_pickle=False)
    return {str(n): (b, f, s) for n, b, f, s in zip(data["names"], data["boxes"], data["fives"], data["scores"])}


def split_names(data_dir: Path, split: str, seed: int):
    from fkd_cli.data import load_split

    data = load_split(data_dir, split, seed=seed)
    folder = "test" if split == "test" else "training"
    return data, [f"{folder}/{p.name}" for p in data.paths]


def report_box_errors(data_dir: Path, cache: dict, seed: int) -> None:
    """How far each rule's landmark box is from the true one: centre error over the true side, and
    |log| of predicted over true side."""
    from fkd_cli.calibrate import fit_rule
    from fkd_cli.detect import Detection

    train, train_names = split_names(data_dir, "train", seed)
    weights = fit(cache, train_names, train.keypoints.numpy())
    matched = [(cache[n], k) for n, k in zip(train_names, train.keypoints) if n in cache]
    rule = fit_rule("mtcnn", [Detection(tuple(b), s) for (b, _, s), _ in matched], [k for _, k in matched])
    print(f"rule (seed {seed} training faces): dx={rule.dx:+.3f} dy={rule.dy:+.3f} scale={rule.scale:.3f}")
    print(f"{'split':<6} {'boxes':<10} {'centre mean':>11} {'p90':>6} {'p99':>6} {'|log side| mean':>15} {'p90':>6} {'p99':>6}")
    for split in ("train", "val", "test"):
        data, names = split_names(data_dir, split, seed)
        errors = {"rule": [], "5 points": []}
        for name, keypoints in zip(names, data.keypoints.numpy()):
            if name not in cache:
                continue
            box, five, _ = cache[name]
            centre, side = landmark_box_centre_side(keypoints)
            width = box[2] - box[0]
            guesses = {"rule": ((box[:2] + box[2:]) / 2 + np.array([rule.dx, rule.dy]) * width, rule.scale * width),
                       "5 points": predicted_box(box, five, weights)}
            for kind, (c, s) in guesses.items():
                errors[kind].append((np.linalg.norm(c - centre) / side, abs(np.log(s / side))))
        for kind, values in errors.items():
            e = np.array(values)
            print(f"{split:<6} {kind:<10} {e[:, 0].mean():>11.3f} {np.quantile(e[:, 0], .9):>6.3f} {np.quantile(e[:, 0], .99):>6.3f} "
                  f"{e[:, 1].mean():>15.3f} {np.quantile(e[:, 1], .9):>6.3f} {np.quantile(e[:, 1], .99):>6.3f}")


def train_with_five_point_boxes(data_dir: Path, cache: dict, seed: int, fkd_args: list[str]) -> None:
    """`fkd train` with the detector's training crops cut around the five-point regression's box,
    fitted on the run's own training faces (its validation faces stay out of the fit)."""
    from fkd_cli import trainer
    from fkd_cli.framing import square

    rule_boxes = trainer.Trainer.calibrate_detector

    def five_point_boxes(self, pp, images, fit_rule):
        boxes = rule_boxes(self, pp, images, fit_rule)  # the rule is still measured and stored
        if boxes is None:
            return None
        names = [f"training/{p.name}" for p in self.train_split.paths]
        weights = fit(cache, names, self.train_split.keypoints.numpy())
        out = []
        for box, name in zip(boxes, names):
            if box is None or name not in cache:
                out.append(None)
                continue
            centre, side = predicted_box(cache[name][0], cache[name][1], weights)
            out.append(square(centre[0], centre[1], pp.face_margin * side))
        self.reporter.message(f"five-point boxes for {sum(b is not None for b in out)} of {len(out)} training faces")
        return out

    trainer.Trainer.calibrate_detector = five_point_boxes
    from fkd_cli.cli import main as fkd

    sys.argv = ["fkd", "train", *fkd_args, "--data-dir", str(data_dir), "--set", f"seed={seed}"]
    fkd()


def evaluate_both(data_dir: Path, cache: dict, model: Path | None, split: str, seed: int) -> None:
    """`fkd evaluate`'s loop on the cached detections: the rule's boxes, then the five-point boxes."""
    from fkd_cli.data import ImageCache
    from fkd_cli.detect import Detection
    from fkd_cli.evaluate import evaluate
    from fkd_cli.framing import square
    from fkd_cli.inference import load_predictor

    train, train_names = split_names(data_dir, "train", seed)
    weights = fit(cache, train_names, train.keypoints.numpy())
    data, names = split_names(data_dir, split, seed)
    images = ImageCache(data.paths).load_all()
    predictor = load_predictor(model, device="cpu")
    # the matched detection of each image, as measured (an image without one counts as missed)
    detections = [[Detection(tuple(cache[n][0]), float(cache[n][2]))] if n in cache else [] for n in names]
    order, in_order = iter(()), iter(())
    predictor.detect = lambda image: next(order)
    rule_box = predictor.initial_box

    def five_point_box(image, detection):  # evaluate() asks for one first box an image, in order
        name = next(in_order)
        if detection is None:
            return rule_box(image, None)
        centre, side = predicted_box(cache[name][0], cache[name][1], weights)
        return square(centre[0], centre[1], predictor.pp.face_margin * side)

    print(f"model: {predictor.source} on {data_dir}/{split} (seed {seed}; {len(names)} images)")
    for kind in ("rule", "5 points"):
        order, in_order = iter(detections), iter(names)
        predictor.initial_box = rule_box if kind == "rule" else five_point_box
        result = evaluate(predictor, images, data.keypoints, "detector")
        m, nme = result.metrics, result.nme
        regions = " ".join(f"{r} {100 * float(v.mean()):.2f}" for r, v in result.region_nme.items())
        worst = [(data.paths[i].name, round(100 * float(nme[i]), 2)) for i in nme.argsort(descending=True)[:4]]
        print(f"{kind:<9} NME {100 * m['nme']:.2f}% median {100 * m['nme_median']:.2f}% FR@8 {100 * m['fr_8']:.2f}% "
              f"FR@10 {100 * m['fr_10']:.2f}% ({int((nme > 0.10).sum())} faces) AUC@10 {100 * m['auc_10']:.1f}% "
              f"missed {m['missed']} | {regions}\n          worst: {worst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--cache", type=Path, default=Path("runs/five-point-boxes.npz"))
    sub = parser.add_subparsers(dest="step", required=True)
    measure = sub.add_parser("measure")
    measure.add_argument("--seed", type=int, default=0, help="whose training faces the regression is fitted on")
    train = sub.add_parser("train")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("fkd_args", nargs=argparse.REMAINDER, help="after --: arguments for fkd train")
    evaluate = sub.add_parser("evaluate")
    evaluate.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    evaluate.add_argument("--split", default="test", help="test or val")
    evaluate.add_argument("--seed", type=int, default=0, help="the model's seed: its training faces fit the regression")
    args = parser.parse_args()

    if args.step == "measure":
        if not args.cache.exists():
            measure_cache(args.data_dir, args.cache)
        report_box_errors(args.data_dir, load_cache(args.cache), args.seed)
    elif args.step == "train":
        train_with_five_point_boxes(args.data_dir, load_cache(args.cache), args.seed,
                                    [a for a in args.fkd_args if a != "--"])
    else:
        evaluate_both(args.data_dir, load_cache(args.cache), args.model, args.split, args.seed)


if __name__ == "__main__":
    main()
