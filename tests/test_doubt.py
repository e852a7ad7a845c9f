"""The doubt head (doubt.py): each point's expected error from the network's own features, fitted after
training, carried through checkpoints and exports, read by the one inference path as the scores' signal."""

import dataclasses

import numpy as np
import pytest
import torch

from fkd_cli.doubt import EPS, rank_correlation, ridge_path
from fkd_cli.framing import Preprocess
from fkd_cli.inference import Predictor

from .helpers import TINY, invoke, make_dataset, one_line_error, sets

K = 68


def test_ridge_recovers_a_linear_relation_and_its_intercept():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(500, 12, generator=g, dtype=torch.float64) * 3 + 5
    weight, bias = torch.randn(4, 12, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    (fitted_weight, fitted_bias), (shrunk, _) = ridge_path(features, features @ weight.T + bias, (1e-6, 1e5))
    torch.testing.assert_close(fitted_weight, weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(fitted_bias, bias, atol=1e-5, rtol=0)
    # the penalty shrinks the weights
    assert shrunk.norm() < 0.5 * weight.norm()


def test_rank_correlation():
    a = torch.arange(10.0)
    assert rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


def contract(**changes) -> Preprocess:
    from fkd_cli.config import Config

    return dataclasses.replace(Preprocess.from_config(Config(input_size=32), K), refine_steps=0, **changes)


def test_the_inference_path_reads_the_doubt_columns_with_and_without_flip_tta():
    """A network whose last K outputs are log errors: the points come from the first 2K only, and the
    spread is the expected error in crop sides (averaged over the two passes, mirrored points matched)."""
    rng = np.random.default_rng(0)
    coordinates = rng.uniform(-0.5, 0.5, (1, 2 * K)).astype(np.float32)
    log_errors = rng.uniform(-1, 2, (1, K)).astype(np.float32)
    image, box = np.zeros((100, 100, 3), np.uint8), (10, 20, 64)
    plain_pp = contract(flip_tta=False)
    plain = Predictor(lambda x: np.repeat(coordinates, len(x), axis=0), plain_pp, "test", detector="none")
    expected_points, no_spread = plain.keypoints_and_spread([image], [box])
    assert no_spread is None  # one pass, no head: nothing to doubt with
    network = lambda x: np.repeat(np.concatenate([coordinates, log_errors], axis=1), len(x), axis=0)  # noqa: E731
    expected = (np.exp(log_errors[0]) - EPS) / 32
    points, spread = Predictor(network, contract(flip_tta=False, doubt_head=True), "test", detector="none").keypoints_and_spread([image], [box])
    np.testing.assert_allclose(points, expected_points, atol=1e-5)
    np.testing.assert_allclose(spread[0], expected, rtol=1e-5)
    flipped = contract(flip_tta=True, doubt_head=True)
    _, spread = Predictor(network, flipped, "test", detector="none").keypoints_and_spread([image], [box])
    np.testing.assert_allclose(spread[0], (expected + expected[flipped.flip_permutation]) / 2, rtol=1e-5)


@pytest.fixture(scope="module")
def doubt_run(tmp_path_factory):
    """A tiny one-pass run with enough validation faces, and its copy with a doubt head."""
    data = make_dataset(tmp_path_factory.mktemp("doubt-data"), n_train=40, n_test=4)
    root = tmp_path_factory.mktemp("doubt-runs")
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", root / "run", "--quiet",
                    *sets(TINY + ["val_fraction=0.5", "epochs=1", "flip=false", "flip_tta=false", "doubt_head=false"]))
    assert result.exit_code == 0, result.output
    result = invoke("calibrate", root / "run" / "model.pth", "--doubt", "--data-dir", data, "--out", root / "doubt.pth")
    assert result.exit_code == 0, result.output
    assert "doubt head from" in " ".join(result.output.split())
    return data, root / "run" / "model.pth", root / "doubt.pth"


def test_calibrate_doubt_keeps_the_landmarks_and_gives_scores_a_signal(doubt_run):
    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.inference import load_predictor

    data, model, with_head = doubt_run
    before, after = (torch.load(p, weights_only=True) for p in (model, with_head))
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    assert after["preprocess"]["doubt_head"] is True and after["doubt_head"]["weight"].shape[0] == K
    assert after["preprocess"]["confidence"]["shape_weight"] == pytest.approx(1 / 3)
    split = load_split(data, "test")
    results = {}
    for name, path, backend in (("plain", model, "pytorch"), ("head", with_head, "pytorch"), ("twin", with_head, "auto")):
        predictor = load_predictor(path, backend=backend)
        results[name] = (predictor, evaluate(predictor, ImageCache(split.paths), split.keypoints, boxes="gt"))
    assert results["twin"][0].backend.name == "onnxruntime"  # the export carries the head (3K outputs)
    plain, head, twin = (results[n][1] for n in ("plain", "head", "twin"))
    assert plain.spread is None and head.spread is not None and bool((head.spread > 0).all())
    torch.testing.assert_close(head.predictions, plain.predictions)  # the head adds doubt, never moves a point
    torch.testing.assert_close(twin.predictions, head.predictions, atol=1e-3, rtol=0)
    torch.testing.assert_close(twin.spread, head.spread, atol=1e-4, rtol=1e-3)
    point_scores, face_scores = results["head"][0].scores(head.predictions.numpy(), head.spread.numpy())
    assert point_scores.shape == (len(split.paths), K) and ((face_scores > 0) & (face_scores < 1)).all()


@pytest.mark.parametrize("arch, grid", [("fkdnet-integral", 2 * 8 * 2 * 2), ("fkdnet-hm", 4 * 8 * 2 * 2)])
def test_heatmap_networks_get_a_doubt_head_from_their_grid_and_heatmap_spread(tmp_path, arch, grid):
    """The heatmap networks have no regression head; their doubt head reads their 1/16 grid (here a
    32-px crop at width 8: 2 x 2 cells) and the spread of their heatmaps instead, and goes the whole way:
    calibrated, points unmoved, exported with it, scored."""
    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.inference import load_predictor

    data = make_dataset(tmp_path / "data", n_train=40, n_test=4)
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "run", "--quiet",
                    *sets(TINY + ["val_fraction=0.5", "epochs=1", "doubt_head=false", f"model={arch}"]))
    assert result.exit_code == 0, result.output
    model, with_head = tmp_path / "run" / "model.pth", tmp_path / "doubt.pth"
    result = invoke("calibrate", model, "--doubt", "--data-dir", data, "--out", with_head)
    assert result.exit_code == 0, result.output
    saved = torch.load(with_head, weights_only=True)
    assert saved["arch"] == arch and saved["doubt_head"]["weight"].shape == (K, grid + 2 * K)  # two spreads a point
    split = load_split(data, "test")
    plain = evaluate(load_predictor(model, backend="pytorch"), ImageCache(split.paths), split.keypoints, boxes="gt")
    head = evaluate(load_predictor(with_head, backend="pytorch"), ImageCache(split.paths), split.keypoints, boxes="gt")
    twin_predictor = load_predictor(with_head, backend="auto")
    twin = evaluate(twin_predictor, ImageCache(split.paths), split.keypoints, boxes="gt")
    assert twin_predictor.backend.name == "onnxruntime"
    torch.testing.assert_close(head.predictions, plain.predictions)
    assert plain.spread is None and bool((head.spread > 0).all())
    torch.testing.assert_close(twin.spread, head.spread, atol=1e-4, rtol=1e-3)


def test_the_doubt_head_fit_is_repeatable(doubt_run, tmp_path):
    """The fit's augmented crops are drawn from the run's seed: calibrating the same network again gives
    the same head, bit for bit."""
    data, model, with_head = doubt_run
    result = invoke("calibrate", model, "--doubt", "--data-dir", data, "--out", tmp_path / "again.pth")
    assert result.exit_code == 0, result.output
    first, again = (torch.load(p, weights_only=True)["doubt_head"] for p in (with_head, tmp_path / "again.pth"))
    assert torch.equal(first["weight"], again["weight"]) and torch.equal(first["bias"], again["bias"])


def test_training_with_a_doubt_head_decodes_each_image_once(tmp_path, monkeypatch):
    """The head is fitted on the images the run has decoded already, not on the files read again."""
    import collections

    import fkd_cli.data as data_module

    reads = collections.Counter()
    real_read = data_module.read_image

    def counting_read(path):
        reads[str(path)] += 1
        return real_read(path)

    monkeypatch.setattr(data_module, "read_image", counting_read)
    data = make_dataset(tmp_path / "data", n_train=24, n_test=2)
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "run", "--quiet",
                    *sets(TINY + ["val_fraction=0.5", "epochs=1", "flip_tta=false", "doubt_head=true"]))
    assert result.exit_code == 0, result.output
    assert "doubt_head" in torch.load(tmp_path / "run" / "model.pth", weights_only=True)
    assert len(reads) == 24 and set(reads.values()) == {1}  # every training/ file (train and val halves), once


def test_training_with_doubt_head_fits_it_at_the_end(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=24, n_test=2)
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "run", "--quiet",
                    *sets(TINY + ["val_fraction=0.5", "epochs=1", "flip_tta=false", "doubt_head=true"]))
    assert result.exit_code == 0, result.output
    saved = torch.load(tmp_path / "run" / "model.pth", weights_only=True)
    assert saved["preprocess"]["doubt_head"] is True and "doubt_head" in saved
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "other",
                    *sets(TINY + ["validation=test", "epochs=1", "flip_tta=false", "doubt_head=true"]))
    assert result.exit_code == 0, result.output
    assert "no doubt head" in " ".join(result.output.split())  # the test split is never fitted on
    saved = torch.load(tmp_path / "other" / "model.pth", weights_only=True)
    assert saved["preprocess"]["doubt_head"] is False and saved.get("doubt_head") is None


def test_a_damaged_doubt_head_is_refused_in_one_line(doubt_run, tmp_path):
    from fkd_cli.checkpoint import save_checkpoint

    data, model, with_head = doubt_run
    saved = torch.load(with_head, weights_only=True)
    payload = {k: v for k, v in saved.items() if k not in ("format", "format_version", "fkd_version")}
    cases = {"missing": {**payload, "doubt_head": None},
             "shape": {**payload, "doubt_head": {"weight": torch.zeros(3, 5), "bias": torch.zeros(3)}},
             "nan": {**payload, "doubt_head": {**saved["doubt_head"], "bias": torch.full((K,), float("nan"))}},
             "unannounced": {**payload, "preprocess": {**saved["preprocess"], "doubt_head": False}}}
    for name, bad in cases.items():
        path = tmp_path / f"{name}.pth"
        save_checkpoint(path, bad)
        text = one_line_error(invoke("evaluate", "--model", path, "--backend", "pytorch", "--data-dir", data))
        assert f"{name}.pth" in text and "doubt head" in text, name


def test_displaced_crops_slide_off_the_face_and_keep_its_true_keypoints():
    """The crops the head learns "no face here" from: slid 0.3-1.2 of a side, repeatable, and their
    targets are the face's real keypoints in the slid crop's units (mostly outside it)."""
    from fkd_cli.doubt import DISPLACEMENT, DisplacedCrops
    from fkd_cli.framing import box_from_points, crop_points_to_targets

    pp = contract()
    rng = np.random.default_rng(0)
    images = [np.zeros((200, 240, 3), np.uint8) for _ in range(20)]
    keypoints = torch.from_numpy(rng.uniform(60, 140, (20, K, 2)).astype(np.float32))
    crops = DisplacedCrops(images, keypoints, pp, seed=3)
    again = DisplacedCrops(images, keypoints, pp, seed=3)
    for i in range(len(crops)):
        x, target, _ = crops[i]
        assert x.shape == (3, 32, 32) and torch.equal(target, again[i][1])
        left, top, side = box_from_points(keypoints[i], pp.face_margin)
        # where the keypoints sit in the face's own crop, in target units: the slid crop's differ by the slide
        own = crop_points_to_targets((keypoints[i] - torch.tensor([left, top])) * (32 / side), pp).reshape(-1, 2)
        slide = ((own - target.reshape(-1, 2)) * pp.target_scale / 32).mean(0)  # in crop sides
        assert torch.allclose((own - target.reshape(-1, 2)) * pp.target_scale / 32, slide.expand(K, 2), atol=1e-4)
        assert DISPLACEMENT[0] - 0.02 <= float(slide.norm()) <= DISPLACEMENT[1] + 0.02


def test_a_contract_that_promises_a_doubt_head_the_network_lacks_is_one_line():
    """An export whose metadata says doubt head but whose network gives 2K numbers: a clear error, not NaN scores."""
    from fkd_cli.errors import FkdError

    coordinates = np.zeros((1, 2 * K), np.float32)
    predictor = Predictor(lambda x: np.repeat(coordinates, len(x), axis=0), contract(doubt_head=True), "test", detector="none")
    with pytest.raises(FkdError, match="doubt head"):
        predictor.keypoints_and_spread([np.zeros((64, 64, 3), np.uint8)], [(0, 0, 64)])


