"""The two passes of flip TTA, one by one, on a split through `fkd evaluate`'s detector boxes: each
pass's NME and its mean signed error (a bias the average of the two passes hides), and other pairs
of passes at the same cost (the mirrored crop cut a little larger, smaller or shifted).

    python benchmarks/flip_passes.py --data-dir data                       # the bundled model
    python benchmarks/flip_passes.py --model runs/x/model.pth --data-dir data

A model whose mirrored training labels sit where the mirrored pixels are has no such bias: its plain
and mirrored passes err alike. One trained with labels a pixel off (torchvision's keypoint flip on fkd's
crop pixels, before the fix) errs to the left in the plain pass and to the right in the mirrored one.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

# (scale of the box, shift of its centre along x and y in box sides, mirrored)
PLAIN, MIRRORED = (1.0, 0.0, 0.0, False), (1.0, 0.0, 0.0, True)
VARIANTS = [PLAIN, MIRRORED, (0.95, 0.0, 0.0, False), (0.95, 0.0, 0.0, True), (1.05, 0.0, 0.0, False),
            (1.05, 0.0, 0.0, True), (1.0, 0.03, 0.0, True), (1.0, -0.03, 0.0, True), (1.0, 0.0, 0.03, True),
            (1.0, 0.0, -0.03, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=8, help="how many of the best pairs to print")
    args = parser.parse_args()

    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.detect import match_detection
    from fkd_cli.framing import (
        crop,
        crop_points_to_image,
        flip_crop_points,
        outputs_to_crop_points,
        to_input,
    )
    from fkd_cli.inference import load_predictor
    from fkd_cli.metrics import failure_rate, per_image_nme

    predictor = load_predictor(args.model)
    pp, size = predictor.pp, predictor.pp.input_size
    split = load_split(args.data_dir, args.split)
    images = ImageCache(split.paths).load_all()
    truth = split.keypoints
    # the boxes `fkd evaluate` starts from: the detection holding the annotated face, through the rule
    boxes = [predictor.initial_box(images[i], match_detection(predictor.detect(images[i]), truth[i]))
             for i in range(len(images))]

    def one_pass(scale: float, dx: float, dy: float, mirrored: bool) -> np.ndarray:
        out = []
        for image, (left, top, side) in zip(images, (b[:3] for b in boxes)):
            new_side = side * scale
            centre_x, centre_y = left + side * (0.5 + dx), top + side * (0.5 + dy)
            box = (round(centre_x - new_side / 2), round(centre_y - new_side / 2), round(new_side))
            x = to_input(crop(image, box, size)[0][None], pp)
            points = outputs_to_crop_points(predictor.backend(x[..., ::-1].copy() if mirrored else x), pp)
            out.append(crop_points_to_image(flip_crop_points(points, pp) if mirrored else points, np.array([box]), size)[0])
        return np.stack(out)

    def score(points: np.ndarray) -> tuple[float, float]:
        nme = per_image_nme(torch.from_numpy(points), truth, pp.norm_points)
        return 100 * float(nme.mean()), 100 * failure_rate(nme, 0.10)

    passes = {v: one_pass(*v) for v in VARIANTS}
    eyes = np.linalg.norm(truth[:, pp.norm_points[0]].numpy() - truth[:, pp.norm_points[1]].numpy(), axis=1)
    print(f"model: {predictor.source} on {args.data_dir}/{args.split} ({len(images)} faces, detector boxes)")
    print("one pass: NME, FR@10%, mean signed error along x and y in % of the eye distance")
    for variant, points in passes.items():
        bias = 100 * ((points - truth.numpy()) / eyes[:, None, None]).mean(axis=(0, 1))
        nme, fr = score(points)
        print(f"  scale {variant[0]:.2f} shift ({variant[1]:+.2f}, {variant[2]:+.2f}) {'mirrored' if variant[3] else 'plain   '}"
              f"  NME {nme:.3f}%  FR@10 {fr:.2f}%  bias x {bias[0]:+.2f}%  y {bias[1]:+.2f}%")
    pairs = sorted((score((passes[a] + passes[b]) / 2), a, b) for a, b in itertools.combinations(VARIANTS, 2))
    default = score((passes[PLAIN] + passes[MIRRORED]) / 2)
    print(f"flip TTA as fkd runs it (plain + mirrored): NME {default[0]:.3f}%  FR@10 {default[1]:.2f}%")
    print(f"the best {args.pairs} pairs of two passes:")
    for (nme, fr), a, b in pairs[: args.pairs]:
        print(f"  {a} + {b}: NME {nme:.3f}%  FR@10 {fr:.2f}%")


if __name__ == "__main__":
    main()
