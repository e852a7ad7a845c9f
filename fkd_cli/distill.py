"""Knowledge distillation: trained models, averaged, teach a new one on the same training crops.

An ensemble of a few models predicts better than any one of them but costs a network call each; a
student of today's size trained towards the ensemble's predictions (as well as the labels) inherits
part of that accuracy at one model's cost. The teachers see exactly the student's (augmented) crops,
so their preprocessing must match the student's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .backends import TorchBackend
from .checkpoint import build_from_checkpoint, load_checkpoint
from .errors import FkdError
from .framing import Preprocess, crop_points_to_targets
from .inference import Predictor
from .models import fuse_for_inference

# what a teacher must share with the student to read the student's crops and speak in its targets
SHARED_CONTRACT = ("num_keypoints", "input_size", "channels", "mean", "std", "framing", "face_margin",
                   "target_offset", "target_scale")


def contract_difference(other: Preprocess, pp: Preprocess) -> str | None:
    """The first shared-contract key on which `other` differs from `pp`, as "key=theirs vs ours"; None
    when a model with `other` reads `pp`'s crops and speaks in its target units."""
    for key in SHARED_CONTRACT:
        if getattr(other, key) != getattr(pp, key):
            return f"{key}={getattr(other, key)!r} but {getattr(pp, key)!r}"
    return None


class Teacher:
    """The mean prediction of one or more checkpoints on a batch of the student's normalised crops,
    in the student's target units. Each teacher runs once a crop (no flip TTA: the ensemble is the
    averaging, and training crops are flipped at random anyway)."""

    def __init__(self, paths: list[str], pp: Preprocess, device: torch.device):
        self.pp = pp
        self.predictors = []
        for path in map(Path, paths):
            data = load_checkpoint(path)
            teacher_pp = Preprocess.from_dict(data["preprocess"])
            difference = contract_difference(teacher_pp, pp)
            if difference is not None:
                raise FkdError(f"config key 'teachers': {path} has {difference} in this run; a teacher must be "
                               f"trained on the same crops")
            model = fuse_for_inference(build_from_checkpoint(data, path)).to(device)
            teacher_pp.flip_tta = False
            self.predictors.append(Predictor(TorchBackend(model, device), teacher_pp, str(path), detector="none"))

    def __len__(self) -> int:
        return len(self.predictors)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised crops (N, C, S, S) -> the teachers' mean targets (N, 2K)."""
        crops = inputs.float().cpu().numpy()  # predictors take numpy (the inference path imports no torch)
        points = torch.from_numpy(np.stack([p.run_inputs(crops) for p in self.predictors]).mean(0)).to(inputs.device)
        return crop_points_to_targets(points, self.pp).reshape(len(inputs), -1)
