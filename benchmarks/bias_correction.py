"""The per-point bias correction (fkd_cli/bias.py) measured: how large the network's mean error is,
where it is, and what the correction buys on `test/` when fitted in different ways.

    python benchmarks/bias_correction.py --data-dir data                       # the bundled model
    python benchmarks/bias_correction.py --model runs/x/model.pth --data-dir data

Prints, for the network alone (no correction): its mean signed error on the validation split (ground-truth
boxes) along x and y, in image pixels, in % of the eye distance and in crop pixels, by face size; the
same in crop pixels for each pass alone, on the crop and on the mirrored crop (a network trained with
flip augmentation errs alike on both, one trained without it learns the labels' own offset on the crop and
errs by twice it on the mirror); then
dev `test/` NME through the detector path with no correction, with the model's stored one, with one
fitted on the training faces, and, as a check on noise, the validation split's two halves each
corrected by a fit on the other half.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()

    from fkd_cli.bias import fit_bias_correction
    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.framing import box_sides, crop, flip_crop_points, to_input
    from fkd_cli.inference import load_predictor
    from fkd_cli.metrics import failure_rate, per_image_nme

    stored = load_predictor(args.model)
    network = stored.configured(bias_correction=False)  # the network's own predictions
    pp, norm = network.pp, network.pp.norm_points
    cfg = stored.info.get("config", {})

    def run(split: str, boxes: str):
        data = load_split(args.data_dir, split, cfg.get("val_fraction", 0.1), cfg.get("seed", 0))
        images = ImageCache(data.paths)
        return evaluate(network, images, data.keypoints, boxes), data.keypoints, images

    def corrected(result, correction) -> torch.Tensor:
        sides = np.array([box_sides(b) for b in result.boxes], dtype=np.float32)
        shift = np.asarray(correction, np.float32)[None] * (sides / pp.input_size)[:, None, :]
        return result.predictions + torch.from_numpy(shift)

    def score(predictions, truth) -> str:
        nme = per_image_nme(predictions, truth, norm)
        return f"NME {100 * float(nme.mean()):.3f}%  FR@10 {100 * failure_rate(nme, 0.10):.2f}%"

    val, val_truth, val_images = run("val", "gt")
    error = (val.predictions - val_truth).numpy()  # prediction - label, image pixels
    eyes = np.linalg.norm(val_truth[:, norm[0]].numpy() - val_truth[:, norm[1]].numpy(), axis=1)
    sides = np.array([box_sides(b)[0] for b in val.boxes], dtype=np.float64)
    print(f"model: {stored.source}; validation split: {len(eyes)} faces, ground-truth boxes, no correction")
    print("mean signed error (prediction - label):")
    for axis, name in ((0, "x"), (1, "y")):
        per_face = error[:, :, axis].mean(axis=1)
        print(f"  along {name}: {per_face.mean():+.3f} image px, {100 * (per_face / eyes).mean():+.3f}% of the eye distance, "
              f"{(per_face * pp.input_size / sides).mean():+.3f} crop px")
    for low, high in ((0, 40), (40, 60), (60, 80), (80, np.inf)):
        mask = (eyes >= low) & (eyes < high)
        if mask.any():
            print(f"  eyes {low:g}-{high:g} px apart ({mask.sum()} faces): x {error[mask, :, 0].mean():+.3f} image px, "
                  f"{(error[mask, :, 0].mean(axis=1) * pp.input_size / sides[mask]).mean():+.3f} crop px")

    print("each pass alone, mean signed error in crop px (prediction - label):")
    plain = network.configured(flip_tta=False)
    # the crops the evaluation cut, with the labels moved into them by the same mapping
    crops, truth_crop = zip(*(crop(val_images[i], box, pp.input_size, val_truth[i].numpy()) for i, box in enumerate(val.boxes)))
    inputs, truth_crop = to_input(np.stack(crops), pp), np.stack(truth_crop)
    for name, points in (("crop", plain.run_inputs(inputs)),
                         ("mirrored crop", flip_crop_points(plain.run_inputs(inputs[..., ::-1].copy()), pp) if pp.flip_permutation else None)):
        if points is not None:
            print(f"  {name}: x {(points - truth_crop)[..., 0].mean():+.3f}, y {(points - truth_crop)[..., 1].mean():+.3f}")

    train, train_truth, _ = run("train", "gt")
    from_train = fit_bias_correction(train, train_truth, network.pp)
    from_val = fit_bias_correction(val, val_truth, network.pp)
    test, test_truth, _ = run("test", "detector")
    print(f"\ndev test/ ({len(test_truth)} faces, detector path):")
    print(f"  no correction:                      {score(test.predictions, test_truth)}")
    if stored.pp.bias_correction is not None:
        print(f"  the model's stored correction:      {score(corrected(test, stored.pp.bias_correction), test_truth)}")
    print(f"  fitted on the validation split:     {score(corrected(test, from_val), test_truth)}")
    print(f"  fitted on the training faces:       {score(corrected(test, from_train), test_truth)}")
    for name, fitted in (("validation", from_val), ("training", from_train)):
        values = np.asarray(fitted)
        print(f"  ({name} fit: mean x {values[:, 0].mean():+.3f}, y {values[:, 1].mean():+.3f} crop px, "
              f"largest {np.abs(values).max():.3f})")

    print("\nvalidation halves, each corrected by a fit on the other half (seeded split):")
    order = np.random.default_rng(0).permutation(len(val_truth))
    halves = order[: len(order) // 2], order[len(order) // 2:]
    for fit_on, apply_to in (halves, halves[::-1]):
        part = lambda result, idx: type(result)(  # noqa: E731 - a sub-result for a few faces
            {}, result.nme[idx], result.missed_mask[idx], result.predictions[idx], boxes=[result.boxes[i] for i in idx])
        fitted = fit_bias_correction(part(val, fit_on), val_truth[fit_on], network.pp)
        held = part(val, apply_to)
        print(f"  {len(apply_to)} faces: {score(held.predictions, val_truth[apply_to])} -> "
              f"{score(corrected(held, fitted), val_truth[apply_to])}")


if __name__ == "__main__":
    main()
