"""Data: the official archive layout, splits, and the training dataset (images are read by images.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import Config
from .errors import FkdError
from .framing import Box, Preprocess, box_sides, crop, crop_points_to_targets, flip_crop_points, to_input
from .images import read_image
from .metrics import seed_units
from .tv import F, tv_tensors, v2

SPLIT_FILES = {"training": "training_frames_keypoints.csv", "test": "test_frames_keypoints.csv"}
MAX_COORDINATE = 100_000  # a keypoint further out than this (in pixels) is a broken annotation

# ---- the official layout ------------------------------------------------------------------------


@dataclass
class Split:
    """One split of a data folder: image paths and keypoints (N, K, 2) in image pixels."""

    name: str
    paths: list[Path]
    keypoints: torch.Tensor

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    def check_keypoints(self, data_dir: Path, expected: int) -> None:
        """A model that predicts `expected` points can be measured on this split, or a one-line error."""
        if self.num_keypoints != expected:
            raise FkdError(f"{data_dir}: {self.num_keypoints} keypoints per row, but the model predicts {expected}")

    @property
    def duplicates(self) -> int:
        """How many files are named on more than one row."""
        return len(self.paths) - len(set(self.paths))

    def subset(self, indices: list[int], name: str) -> "Split":
        return Split(name, [self.paths[i] for i in indices], self.keypoints[indices])


HINT = "run `fkd download-data` (or pass --data-dir to a folder in the official layout)"


def read_csv(csv_path: Path) -> tuple[list[str], torch.Tensor]:
    """File names and keypoints from a `file,x0,y0,...` CSV; errors name the file and row."""
    import pandas as pd  # here, not at the top: predicting never reads a CSV, and pandas takes 0.3-1 s to import

    try:
        frame = pd.read_csv(csv_path)
    except FileNotFoundError:
        raise FkdError(f"{csv_path}: missing; {HINT}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FkdError(f"{csv_path}: not a keypoint CSV ({str(exc).splitlines()[0]})") from None
    if len(frame) == 0:
        raise FkdError(f"{csv_path}: has a header but no rows; expected one row per image (file name, then x,y pairs)")
    values = frame.iloc[:, 1:]
    if values.shape[1] == 0 or values.shape[1] % 2:
        raise FkdError(f"{csv_path}: expected a file name then x,y pairs on each row, found {values.shape[1]} numbers")
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
        raise FkdError(f"{csv_path}: row {row} has a missing or non-numeric coordinate")
    out_of_range = ~(numeric.abs() <= MAX_COORDINATE).all(axis=1)  # also catches inf
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range.to_numpy())[0]) + 2
        raise FkdError(f"{csv_path}: row {row} has a coordinate that is infinite or beyond {MAX_COORDINATE:,} pixels")
    names = frame.iloc[:, 0].astype(str).tolist()
    points = torch.tensor(numeric.to_numpy(dtype=np.float32)).reshape(len(names), -1, 2)
    return names, points


def read_split(data_dir: Path, split: str) -> Split:
    """`training` or `test` of a folder in the official layout."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FkdError(f"data folder {data_dir}: not found; {HINT}")
    image_dir = data_dir / split
    if not image_dir.is_dir():
        raise FkdError(f"data folder {data_dir}: no '{split}/' image folder; {HINT}")
    names, points = read_csv(data_dir / SPLIT_FILES[split])
    paths = []
    for name in names:
        path = (image_dir / name).resolve()
        if image_dir.resolve() not in path.parents:
            raise FkdError(f"{data_dir / SPLIT_FILES[split]}: file name {name!r} points outside {image_dir}")
        paths.append(path)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FkdError(f"data folder {data_dir}: {len(missing)} images named in the CSV are missing, e.g. {missing[0].name}; {HINT}")
    return Split(split, paths, points)


def train_val_split(training: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Carve a seeded validation split out of `training/`, by file: every row of a file named
    twice lands on the same side, so no image is both trained on and validated on."""
    files = list(dict.fromkeys(training.paths))  # unique, in CSV order
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(round(len(files) * val_fraction)) if val_fraction > 0 else 0
    if len(files) - n_val < 1:
        raise FkdError(f"training split has only {len(files)} images: too few for val_fraction={val_fraction}")
    val_files = {files[i] for i in order[:n_val]}
    val = [i for i, p in enumerate(training.paths) if p in val_files]
    train = [i for i, p in enumerate(training.paths) if p not in val_files]
    return training.subset(train, "train"), training.subset(val, "val")


def training_share(training: Split, fraction: float, seed: int) -> Split:
    """A seeded share of the rows (at least two), for smoke runs and learning curves. One seeded order
    of the rows is cut at the fraction, so the shares are nested: a quarter lies inside the half."""
    order = torch.randperm(len(training.paths), generator=torch.Generator().manual_seed(seed)).tolist()
    return training.subset(sorted(order[: max(2, round(fraction * len(order)))]), "training")


def load_split(data_dir: Path, split: str, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """`training`, `test`, or `val`/`train` (the seeded split of training/ that `fkd train` uses)."""
    if split in ("training", "test"):
        return read_split(data_dir, split)
    if split in ("train", "val"):
        train, val = train_val_split(read_split(data_dir, "training"), val_fraction, seed)
        return train if split == "train" else val
    raise FkdError(f"unknown split '{split}': choose training, test, train or val")


class ImageCache:
    """Decoded images kept in memory, so an epoch does not re-decode PNGs."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self._images: dict[int, np.ndarray] = {}  # uint8 RGB (H, W, 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        image = self._images.get(index)
        if image is None:
            image = self._images[index] = read_image(self.paths[index])
        return image

    def load_all(self) -> "ImageCache":
        for i in range(len(self.paths)):
            self[i]
        return self


# ---- the training dataset ---------------------------------------------------------------------


class JpegCompression(torch.nn.Module):
    """A (C, H, W) uint8 crop (colour or grey) through JPEG at a random quality, with OpenCV's codec
    (torchvision's own JPEG transform rests on its image codecs, deprecated since 0.29); the quality is
    drawn from torch's seeded stream, so a seeded run repeats."""

    def __init__(self, quality: tuple[int, int]):
        super().__init__()
        self.quality = quality

    def forward(self, img):
        import cv2

        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        pixels = img.as_subclass(torch.Tensor).permute(1, 2, 0).numpy()
        colour = pixels.shape[2] == 3
        pixels = np.ascontiguousarray(pixels[..., ::-1] if colour else pixels)  # OpenCV's codec reads BGR
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # OpenCV encodes any uint8 image; keep the crop as it is if it ever does not
            return img
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(pixels.shape)
        decoded = np.ascontiguousarray(decoded[..., ::-1] if colour else decoded)
        return tv_tensors.wrap(torch.from_numpy(decoded).permute(2, 0, 1).contiguous(), like=img)


class KeypointDataset(Dataset):
    """Crops, augments and normalises one face per image; targets are in the checkpoint's units."""

    def __init__(self, images: ImageCache, keypoints: torch.Tensor, pp: Preprocess, cfg: Config, train: bool,
                 detector_boxes: list | None = None):
        self.images, self.keypoints, self.pp, self.cfg, self.train = images, keypoints, pp, cfg, train
        self.detector_boxes = detector_boxes  # calibrated detector crops per image (None where it missed)
        photometric = []
        if train and cfg.color_jitter > 0:
            s = cfg.color_jitter
            photometric.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(0.05, s / 4)))
        if train and cfg.grayscale_prob > 0:
            photometric.append(v2.RandomGrayscale(p=cfg.grayscale_prob))
        self.photometric = v2.Compose(photometric) if photometric else None
        # compression blocks and blur stand in for the low-quality video frames among the worst faces;
        # both keep every pixel where it was, so the keypoints keep their labels
        self.degrade = v2.RandomApply([v2.RandomChoice([JpegCompression((10, 50)), v2.GaussianBlur(kernel_size=7, sigma=(0.6, 2.0))])],
                                      p=cfg.degrade_prob) if train and cfg.degrade_prob > 0 else None
        self.rotate = v2.RandomAffine(degrees=cfg.rotation) if train and cfg.rotation > 0 else None
        # a rectangle of noise over part of the face stands in for the hands, microphones and
        # sunglasses of the worst faces; the keypoints under it keep their labels
        self.erase = v2.RandomErasing(p=cfg.erasing_prob, value="random") if train and cfg.erasing_prob > 0 else None

    def __len__(self) -> int:
        return len(self.images)

    def _box(self, index: int, image: np.ndarray, points: torch.Tensor) -> Box:
        height, width = image.shape[:2]
        framer = self.pp.framer
        if not self.train:
            return framer.truth_box(width, height, points)
        detected = self.detector_boxes[index] if self.detector_boxes is not None else None
        return framer.training_box(width, height, points, detected, self.cfg)

    def __getitem__(self, index: int):
        """(model input, target, unit): `unit` turns this sample's target difference into the
        original project's units, so a training loss in those units can be reported for any config."""
        image, points = self.images[index], self.keypoints[index]
        box = self._box(index, image, points)
        pixels, moved = crop(image, box, self.pp.input_size, points.numpy())
        # torchvision's own types, so that its augmentations move the keypoints with the pixels
        size = self.pp.input_size
        img = tv_tensors.Image(torch.from_numpy(np.array(pixels)).permute(2, 0, 1))  # a copy: augmentations may write
        kp = tv_tensors.KeyPoints(torch.from_numpy(moved), canvas_size=(size, size))
        if self.rotate is not None:
            img, kp = self.rotate(img, kp)
        if self.train and self.cfg.flip and self.pp.flip_permutation is not None and torch.rand(()) < 0.5:
            img = F.horizontal_flip(img)
            # the mirror that un-mirrors flip TTA at inference (x -> size - x: fkd's crop pixel j spans
            # [j, j + 1)); torchvision's keypoint flip takes size - 1 - x, which put every mirrored label
            # a crop pixel left of its face and taught the model a half-pixel bias
            mirrored = flip_crop_points(kp.as_subclass(torch.Tensor).numpy()[None], self.pp)[0]
            kp = tv_tensors.wrap(torch.from_numpy(mirrored), like=kp)
        if self.photometric is not None:
            img = self.photometric(img)
        if self.degrade is not None:  # last, as a camera's compression comes after the scene's light
            img = self.degrade(img)
        x = torch.from_numpy(to_input(img.as_subclass(torch.Tensor).permute(1, 2, 0).numpy()[None], self.pp)[0])
        if self.erase is not None:
            x = self.erase(x)
        target = crop_points_to_targets(kp.as_subclass(torch.Tensor).float(), self.pp).reshape(-1)
        # along x; along y it is the same for every framing (a square crop, or the squashed whole image)
        crop_pixel = box_sides(box)[0] / self.pp.input_size  # image pixels per crop pixel
        per_pixel = seed_units(*image.shape[:2], squash=self.pp.framing == "squash")[0]
        unit = self.pp.target_scale * crop_pixel * per_pixel
        return x, target, torch.tensor(unit, dtype=torch.float32)

