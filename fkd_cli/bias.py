"""The per-point bias correction: the part of the error a mirror-symmetric prediction cannot remove.

Flip augmentation shows the network every face and its mirror image with mirrored labels, so what it
learns is mirror-symmetric: on a mirrored face it puts the mirrored landmarks. Annotations need not
be. On this data the labels sit, on average, up to a crop pixel right of where a mirror-symmetric
network can put them (README, Ablation, the bias correction: the chin most, the jaw's ends least), an
error that no amount of training removes: the mirrored samples teach the opposite. A network trained
without flips learns the offset, but flip TTA brings it back (its mirrored pass errs by twice it). The
mean error over held-out faces, per point and in crop pixels, measures that part; added to every
prediction (`Predictor._corrected`), it is gone.

It is measured on the validation split, faces the network was not fitted to (on training faces a
network has partly learned its labels and the error looks smaller), never on `test/`, and stored in
the checkpoint's preprocessing contract as `bias_correction`.
"""

from __future__ import annotations

import numpy as np

from .evaluate import EvalResult
from .framing import Preprocess, box_sides

MIN_FACES = 50  # fewer held-out faces give no correction: a mean of fewer would be mostly noise (a point errs by
# about 1.5 crop pixels a face on this data, so 50 faces measure a mean to about 0.2 pixels)


def fit_bias_correction(result: EvalResult, keypoints, pp: Preprocess) -> list[list[float]] | None:
    """The correction (K, 2) in crop pixels that zeroes the mean error of `result` (predictions made
    with `pp`'s current correction, added to it); None with fewer than MIN_FACES usable faces.

    Each face's error is measured in its own last crop's pixels, where the network's bias lives (a
    bias of the network is a fixed share of the crop, whatever the face's size in the photo).
    """
    truth = np.asarray(keypoints, dtype=np.float64)
    predictions = result.predictions.numpy().astype(np.float64)
    sides = np.array([box_sides(box) for box in result.boxes], dtype=np.float64)  # (N, 2): width, height
    residual = (truth - predictions) * (pp.input_size / sides)[:, None, :]
    usable = ~result.missed_mask.numpy() & np.isfinite(residual).all(axis=(1, 2))
    if usable.sum() < MIN_FACES:
        return None
    current = np.zeros((pp.num_keypoints, 2)) if pp.bias_correction is None else np.asarray(pp.bias_correction)
    return np.round(current + residual[usable].mean(axis=0), 4).tolist()
