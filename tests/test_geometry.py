"""The maths: flip permutation, mapping back to original pixels through every framing, augmentation."""

import numpy as np
import pytest
import torch

from fkd_cli.config import resolve_config
from fkd_cli.data import ImageCache, KeypointDataset
from fkd_cli.images import decode_image
from fkd_cli.framing import (
    Preprocess,
    box_from_points,
    crop,
    crop_points_to_image,
    flip_crop_points,
    frame_box,
)
from fkd_cli.landmarks import IBUG68_FLIP

from .helpers import MEAN_FACE_68


def test_flip_permutation_is_its_own_inverse():
    perm = torch.tensor(IBUG68_FLIP)
    assert sorted(IBUG68_FLIP) == list(range(68))
    assert torch.equal(perm[perm], torch.arange(68))


def test_flip_maps_left_features_to_right():
    assert IBUG68_FLIP[36] == 45 and IBUG68_FLIP[45] == 36  # outer eye corners
    assert [IBUG68_FLIP[i] for i in range(36, 42)] == [45, 44, 43, 42, 47, 46]  # left eye -> right eye
    assert IBUG68_FLIP[0] == 16 and IBUG68_FLIP[8] == 8  # jaw ends swap, chin stays
    assert IBUG68_FLIP[48] == 54 and IBUG68_FLIP[30] == 30  # mouth corners swap, nose tip stays


def test_mirrored_face_with_swapped_indices_is_a_face_again():
    """Flipping a symmetric face's coordinates and swapping indices gives the same face."""
    pts = torch.tensor(MEAN_FACE_68) * 96
    mirrored = pts.clone()
    mirrored[:, 0] = 96 - mirrored[:, 0]
    assert torch.allclose(mirrored[IBUG68_FLIP], pts, atol=1e-3)
    # and without the swap the left eye would land on the right eye's side
    assert mirrored[36, 0] > 48 > pts[36, 0]


def _pp(framing: str, **overrides) -> Preprocess:
    cfg = resolve_config(None, {"framing": framing, "input_size": 64, **overrides})
    return Preprocess.from_config(cfg, 68)


@pytest.mark.parametrize("framing", ["face", "frame", "squash"])
def test_mapping_back_to_original_pixels(framing):
    """Keypoints taken through the crop+resize come back to the same image pixels."""
    image = np.zeros((150, 210, 3), dtype=np.uint8)
    points = np.array(MEAN_FACE_68, np.float32) * 80 + np.array([60.0, 30.0], np.float32)
    pp = _pp(framing)
    box = pp.framer.truth_box(210, 150, points)
    expected_box = {"face": box_from_points(points, pp.face_margin), "frame": frame_box(210, 150, pp),
                    "squash": (0, 0, 210, 150)}[framing]
    assert box == expected_box
    _, in_crop = crop(image, box, pp.input_size, points)
    back = crop_points_to_image(in_crop[None], np.array([box]), pp.input_size)[0]
    np.testing.assert_allclose(back, points, atol=1e-3)
    left, top, width, height = box if len(box) == 4 else (*box, box[2])
    expected_in_crop = (points - np.array([left, top], np.float32)) * pp.input_size / np.array([width, height], np.float32)
    np.testing.assert_allclose(expected_in_crop, in_crop, atol=1e-3)


def test_squash_resizes_the_whole_image_without_keeping_its_aspect():
    """The original's own pipeline: a 200 x 100 image becomes the whole 64 x 64 input, in training too;
    a bright dot and its keypoint land together on the squashed grid."""
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[48:53, 148:153] = 255  # centre (150.5, 50.5)
    point = np.array([[150.5, 50.5]], np.float32)
    pp = _pp("squash")
    cfg = resolve_config(None, {"framing": "squash"})
    assert pp.framer.training_box(200, 100, point, None, cfg) == (0, 0, 200, 100)
    assert not pp.framer.uses_detector and pp.refine_steps == 0
    pixels, moved = crop(image, pp.framer.truth_box(200, 100, point), 64, point)
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_allclose(moved[0], [150.5 * 64 / 200, 50.5 * 64 / 100], atol=1e-4)
    y, x = np.unravel_index(int(pixels[..., 0].argmax()), pixels.shape[:2])
    assert abs(x + 0.5 - moved[0, 0]) <= 1 and abs(y + 0.5 - moved[0, 1]) <= 1


def test_crop_pixels_follow_keypoints():
    """A bright dot at a keypoint is still under that keypoint after crop + resize (pixels and points agree)."""
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[118:123, 178:183] = 255  # centre (180.5, 120.5) in continuous pixel coordinates
    point = np.array([[180.5, 120.5]], np.float32)
    box = (130, 70, 100)
    pixels, moved = crop(image, box, 50, point)
    y, x = np.unravel_index(int(pixels[..., 0].argmax()), pixels.shape[:2])
    mx, my = moved[0].tolist()
    assert abs((x + 0.5) - mx) <= 1.0 and abs((y + 0.5) - my) <= 1.0


def test_crop_outside_the_image_is_zero_padded():
    image = np.full((40, 40, 3), 200, dtype=np.uint8)
    pixels, _ = crop(image, (-20, -20, 40), 40)
    assert pixels[:15, :15].max() == 0 and pixels[25:, 25:].min() == 200


def test_flip_of_crop_points_undoes_a_mirrored_crop():
    pp = _pp("face")
    pts = np.array(MEAN_FACE_68, np.float32)[None] * 50 + 7
    mirrored = pts.copy()
    mirrored[..., 0] = pp.input_size - mirrored[..., 0]
    mirrored = mirrored[:, IBUG68_FLIP]
    np.testing.assert_allclose(flip_crop_points(mirrored, pp), pts, atol=1e-4)


def test_training_flip_swaps_indices(tmp_path):
    """With flip forced on, the dataset's target for the subject's left eye is on the left of the crop."""
    from .helpers import make_dataset
    from fkd_cli.data import read_split

    root = make_dataset(tmp_path, n_train=2, n_test=1)
    split = read_split(root, "training")
    cfg = resolve_config(None, {"input_size": 64, "rotation": 0, "scale_jitter": 0, "shift_jitter": 0, "color_jitter": 0})
    pp = Preprocess.from_config(cfg, 68)
    ds = KeypointDataset(ImageCache(split.paths), split.keypoints, pp, cfg, train=True)
    torch.manual_seed(0)
    flipped_seen = plain_seen = False
    for _ in range(20):
        _, target, _ = ds[0]
        t = target.view(68, 2)
        # index 36 (image-left outer eye corner of the drawn face) must stay left of 45 either way
        assert t[36, 0] < t[45, 0]
        eval_target = KeypointDataset(ImageCache(split.paths), split.keypoints, pp, cfg, train=False)[0][1].view(68, 2)
        if torch.allclose(t, eval_target, atol=1e-3):
            plain_seen = True
        else:
            flipped_seen = True
    assert flipped_seen and plain_seen


def test_training_flip_keeps_labels_on_the_mirrored_pixels():
    """A bright dot under the nose tip (point 30, its own mirror) stays under its label in flipped
    training crops too, as exactly as in plain ones: the label mirror is the pixel mirror, the one that
    inference uses to undo flip TTA. (torchvision's keypoint flip, size - 1 - x, put it a pixel off.)"""
    image = np.zeros((240, 240, 3), np.uint8)
    points = np.array(MEAN_FACE_68, np.float32) * 120 + 60
    points[30] = [119.5, 140.5]
    image[139:142, 118:121] = 255  # a 3 x 3 dot centred on (119.5, 140.5)
    cfg = resolve_config(None, {"input_size": 96, "rotation": 0, "scale_jitter": 0, "shift_jitter": 0, "color_jitter": 0,
                                "grayscale_prob": 0, "detector_box_prob": 0, "whole_image_prob": 0})
    pp = Preprocess.from_config(cfg, 68)
    ds = KeypointDataset([image], torch.from_numpy(points)[None], pp, cfg, train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        x, target, _ = ds[0]
        label = target.view(68, 2)[30] * pp.target_scale + pp.target_offset  # crop pixels
        brightness = (x[0] - x[0].min()).double()
        ys, xs = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(96) + 0.5, indexing="ij")
        dot = torch.stack([(xs * brightness).sum(), (ys * brightness).sum()]) / brightness.sum()
        assert torch.allclose(dot.float(), label, atol=0.05), (dot, label)
        seen.add(round(float(label[0]), 3))
    assert len(seen) == 2  # both plain and mirrored crops were drawn


def test_decode_handles_every_mode(tmp_path):
    from PIL import Image

    arr = (np.arange(40 * 30) % 251).reshape(30, 40).astype(np.uint8)
    base = Image.fromarray(arr)
    for mode in ("L", "RGB", "RGBA", "P", "CMYK", "LA"):
        path = tmp_path / f"x_{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        base.convert(mode).save(path)
        out = decode_image(path)
        assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    sixteen = Image.fromarray(arr.astype(np.uint16) * 256)
    sixteen.save(tmp_path / "x16.png")
    out = decode_image(tmp_path / "x16.png")
    assert out.astype(np.float32).std() > 10  # scaled into 8 bits, not clipped to white


@pytest.mark.parametrize("config", ["fkd-best", "final.yaml", "template"])
def test_training_samples_carry_the_original_units(tmp_path, config):
    """Each sample's `unit` turns a target difference into the original project's units, exactly as
    `seed_mse` measures it on image pixels, for face crops and whole frames alike."""
    from .helpers import make_dataset
    from fkd_cli.data import read_split
    from fkd_cli.framing import crop_points_to_image, outputs_to_crop_points
    from fkd_cli.metrics import seed_mse

    root = make_dataset(tmp_path, n_train=2, n_test=1)
    split = read_split(root, "training")
    # "template": final.yaml through the Udacity template's frame (shorter side 250, 224 crop)
    overrides = {"framing": "frame", "model": "seed-final"} if config == "template" else {}
    cfg = resolve_config("final.yaml" if config == "template" else config,
                         {"rotation": 0, "scale_jitter": 0, "shift_jitter": 0, "flip": False, "detector": "none", **overrides})
    pp = Preprocess.from_config(cfg, 68)
    ds = KeypointDataset(ImageCache(split.paths), split.keypoints, pp, cfg, train=False)
    _, target, unit = ds[0]
    image = ds.images[0]
    height, width = image.shape[:2]
    box = np.array([pp.framer.truth_box(width, height, split.keypoints[0])])
    to_image = lambda t: torch.from_numpy(crop_points_to_image(outputs_to_crop_points(t[None].numpy(), pp), box, pp.input_size))
    shifted = target + 0.1
    sizes = torch.tensor([[height, width]])
    expected = seed_mse(to_image(shifted), to_image(target), sizes, squash=cfg.framing == "squash")
    assert float((0.1 * unit) ** 2) == pytest.approx(expected, rel=1e-4)
    if cfg.framing != "face":  # a whole-frame model trains on the original's units themselves
        assert float(unit) == pytest.approx(1.0, rel=1e-2)


def test_crop_is_torchvision_resized_crop():
    """framing.crop is Pillow's resize, so that predicting needs no torch; the models were trained through
    torchvision's resized_crop (torch's uint8 antialiased resize, ported from Pillow-SIMD), so the pixels
    must stay what it gives: equal but for rounding (at most 2 levels, on at most 1% of pixels), and the
    keypoints exactly."""
    import random

    from fkd_cli.tv import F, tv_tensors

    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    differing = total = 0
    for _ in range(150):
        height, width = rng.randint(8, 300), rng.randint(8, 300)
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        side = rng.randint(2, 400)
        left, top = rng.randint(-side, width), rng.randint(-side, height)
        size = rng.choice([40, 96, 224, side])
        points = torch.rand(68, 2, generator=generator) * torch.tensor([width, height])
        pixels, moved = crop(image.permute(1, 2, 0).numpy(), (left, top, side), size, points.numpy())
        want = F.resized_crop(tv_tensors.Image(image), top, left, side, side, [size, size], antialias=True)
        want_points = F.resized_crop(tv_tensors.KeyPoints(points, canvas_size=(height, width)), top, left, side, side, [size, size])
        gap = np.abs(pixels.astype(int) - want.as_subclass(torch.Tensor).permute(1, 2, 0).numpy().astype(int))
        assert gap.max() <= 2
        differing, total = differing + int((gap > 0).sum()), total + gap.size
        assert np.array_equal(moved, want_points.as_subclass(torch.Tensor).numpy())
    assert differing / total < 0.01


def same_draws_with(tmp_path, key: str, value, seeds: int):
    """One training sample under the same seeds, without the augmentation `key` and with it set to
    `value`, on a still pipeline (no other augmentation): [(plain input, plain target, input, target)]."""
    from .helpers import make_dataset
    from fkd_cli.data import read_split

    root = make_dataset(tmp_path, n_train=2, n_test=1)
    split = read_split(root, "training")
    still = {"input_size": 64, "rotation": 0, "scale_jitter": 0, "shift_jitter": 0, "color_jitter": 0,
             "flip": False, "detector": "none"}
    plain_cfg, changed_cfg = resolve_config(None, still), resolve_config(None, {**still, key: value})
    pp = Preprocess.from_config(plain_cfg, 68)
    plain, changed = (KeypointDataset(ImageCache(split.paths), split.keypoints, pp, cfg, train=True)
                      for cfg in (plain_cfg, changed_cfg))
    draws = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        x0, t0, _ = plain[0]
        torch.manual_seed(seed)
        x1, t1, _ = changed[0]
        draws.append((x0, t0, x1, t1))
    return draws


def test_erasing_covers_part_of_the_crop_and_keeps_the_targets(tmp_path):
    """erasing_prob=1: every training crop has one rectangle changed, the rest of its pixels and the
    targets are those of the same draw without erasing."""
    for x0, t0, x1, t1 in same_draws_with(tmp_path, "erasing_prob", 1.0, seeds=5):
        assert torch.equal(t0, t1)
        changed = (x0 != x1).any(0)
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert 0.02 * 64 * 64 * 0.9 <= box.numel() <= 0.33 * 64 * 64 * 1.1  # one rectangle of the chosen size
        assert box.float().mean() > 0.95 and changed.sum() == box.sum()


def test_degrading_changes_the_pixels_and_keeps_the_targets(tmp_path):
    """degrade_prob=1: every training crop is compressed or blurred (most pixels change, a little each:
    the same picture), while the targets are those of the same draw without it."""
    for x0, t0, x1, t1 in same_draws_with(tmp_path, "degrade_prob", 1.0, seeds=6):
        assert torch.equal(t0, t1)
        assert (x0 != x1).float().mean() > 0.2
        assert (x1 - x0).abs().mean() < 0.5 * x0.std()


def test_degrade_prob_out_of_range_is_a_config_error(tmp_path):
    from fkd_cli.errors import FkdError

    with pytest.raises(FkdError, match="degrade_prob"):
        resolve_config(None, {"degrade_prob": 1.5})
