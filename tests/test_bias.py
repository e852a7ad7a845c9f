"""The per-point bias correction (bias.py): fitted on held-out faces, stored in the checkpoint, applied
by the one inference path, refitted by `fkd calibrate --bias`."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from fkd_cli.bias import MIN_FACES, fit_bias_correction
from fkd_cli.evaluate import EvalResult
from fkd_cli.framing import Preprocess
from fkd_cli.inference import Predictor

from .helpers import TINY, invoke, make_dataset, one_line_error, sets

K = 68


def contract(**changes) -> Preprocess:
    from fkd_cli.config import Config

    return dataclasses.replace(Preprocess.from_config(Config(input_size=32, flip_tta=True), K), **changes)


def result_of(predictions: np.ndarray, boxes: list, missed: list[bool]) -> EvalResult:
    n = len(predictions)
    return EvalResult({}, torch.zeros(n), torch.tensor(missed), torch.from_numpy(predictions), boxes=boxes)


def test_fit_recovers_a_bias_fixed_in_crop_pixels():
    """Predictions off by the same crop pixels in crops of every size and place: the fit finds that
    offset, ignores missed faces, and adds to a correction the predictions were made with."""
    rng = np.random.default_rng(0)
    pp = contract()
    bias = rng.normal(0, 0.5, (K, 2))
    boxes = [(int(rng.integers(0, 50)), int(rng.integers(0, 50)), int(rng.integers(40, 200))) for _ in range(MIN_FACES + 5)]
    truth = rng.uniform(0, 300, (len(boxes), K, 2))
    sides = np.array([b[2] for b in boxes], dtype=np.float64)
    predictions = truth - bias[None] * (sides / pp.input_size)[:, None, None]
    predictions[0] += 50.0  # a missed face far off: not counted
    missed = [True] + [False] * (len(boxes) - 1)
    fitted = np.asarray(fit_bias_correction(result_of(predictions, boxes, missed), truth, pp))
    np.testing.assert_allclose(fitted, bias, atol=1e-3)
    earlier = dataclasses.replace(pp, bias_correction=np.full((K, 2), 0.25).tolist())
    np.testing.assert_allclose(fit_bias_correction(result_of(predictions, boxes, missed), truth, earlier), bias + 0.25, atol=1e-3)
    # rectangles (the squash framing): x and y scale with the box's own width and height
    rects = [(0, 0, 64, 128)] * (MIN_FACES + 1)
    rect_truth = truth[: len(rects)]
    rect_predictions = rect_truth - bias[None] * np.array([64 / 32, 128 / 32])
    np.testing.assert_allclose(fit_bias_correction(result_of(rect_predictions, rects, [False] * len(rects)), rect_truth, pp),
                               bias, atol=1e-3)


def test_too_few_faces_give_no_correction():
    pp = contract()
    truth = np.zeros((MIN_FACES - 1, K, 2))
    assert fit_bias_correction(result_of(truth + 1, [(0, 0, 32)] * len(truth), [False] * len(truth)), truth, pp) is None


def test_the_one_inference_path_adds_the_correction_with_and_without_flip_tta():
    """A network that always says the same thing: the correction moves every point by its crop
    pixels, scaled to the photo; switching it off gives the network's own prediction back."""
    rng = np.random.default_rng(1)
    outputs = rng.uniform(-0.5, 0.5, (1, 2 * K)).astype(np.float32)
    correction = rng.normal(0, 1, (K, 2))
    image, box = np.zeros((100, 100, 3), np.uint8), (10, 20, 64)
    for flip_tta in (False, True):
        pp = contract(flip_tta=flip_tta, refine_steps=0, bias_correction=correction.tolist())
        predictor = Predictor(lambda x: np.repeat(outputs, len(x), axis=0), pp, "test", detector="none")
        corrected = predictor.keypoints_in_boxes([image], [box])[0]
        plain = predictor.configured(bias_correction=False).keypoints_in_boxes([image], [box])[0]
        np.testing.assert_allclose(corrected - plain, correction * 64 / 32, atol=1e-4)


@pytest.mark.parametrize("bad", [[[0.0, 0.0]] * (K - 1), [[float("nan"), 0.0]] * K, [["x", 0]] * K])
def test_a_damaged_correction_is_refused_in_one_line(tmp_path, bad):
    from fkd_cli.backends import bundled_model_path
    from fkd_cli.checkpoint import update_checkpoint

    model = tmp_path / "m.pth"
    update_checkpoint(bundled_model_path(), model, preprocess={"bias_correction": bad})
    text = one_line_error(invoke("evaluate", "--model", model, "--backend", "pytorch", "--data-dir", tmp_path))
    assert "m.pth" in text and "bias_correction" in text


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory):
    """A tiny run with enough validation faces for a correction (MIN_FACES)."""
    data = make_dataset(tmp_path_factory.mktemp("bias-data"), n_train=80, n_test=4)
    out = tmp_path_factory.mktemp("bias-runs") / "run"
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", out, "--quiet",
                    *sets(TINY + ["val_fraction=0.75", "epochs=1"]))
    assert result.exit_code == 0, result.output
    return data, out


def mean_val_residual(model, data):
    """The mean error per point, in crop pixels, of a model on its own validation faces (gt boxes)."""
    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate
    from fkd_cli.inference import load_predictor

    predictor = load_predictor(model, backend="pytorch")
    split = load_split(data, "val", 0.75, 0)
    result = evaluate(predictor, ImageCache(split.paths), split.keypoints, boxes="gt")
    sides = np.array([b[2] for b in result.boxes], dtype=np.float64)
    return ((split.keypoints.numpy() - result.predictions.numpy()) * (32 / sides)[:, None, None]).mean(0), predictor


def test_training_stores_a_correction_that_zeroes_the_mean_validation_error(held_out_run):
    data, run = held_out_run
    stored = torch.load(run / "model.pth", weights_only=True)["preprocess"]["bias_correction"]
    assert stored is not None and np.abs(stored).max() > 0.01  # a one-epoch network errs: there is something to correct
    residual, predictor = mean_val_residual(run / "model.pth", data)
    np.testing.assert_allclose(residual, 0, atol=2e-3)
    plain = predictor.configured(bias_correction=False)
    assert plain.pp.bias_correction is None and predictor.pp.bias_correction == stored
    from fkd_cli.inference import load_predictor

    twin = load_predictor(run / "model.pth")  # the default path: the ONNX twin, its contract from the export
    assert twin.backend.name == "onnxruntime" and twin.pp.bias_correction == stored
    reports = []
    for flag in ("--bias-correction", "--no-bias-correction"):
        result = invoke("evaluate", "--model", run / "model.pth", "--data-dir", data, "--split", "val", "--boxes", "gt",
                        flag, "--json", "-", "--quiet")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.output))
    assert reports[0]["bias_correction"] is True and reports[1]["bias_correction"] is False
    assert reports[0]["nme"] != reports[1]["nme"]


def test_calibrate_bias_refits_without_touching_the_weights(held_out_run, tmp_path):
    data, run = held_out_run
    stripped, out = tmp_path / "stripped.pth", tmp_path / "refit.pth"
    from fkd_cli.checkpoint import update_checkpoint

    update_checkpoint(run / "model.pth", stripped, preprocess={"bias_correction": None})
    result = invoke("calibrate", stripped, "--bias", "--data-dir", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "bias correction from the validation split" in " ".join(result.output.split())
    before, after = (torch.load(p, weights_only=True) for p in (run / "model.pth", out))
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    np.testing.assert_allclose(after["preprocess"]["bias_correction"], before["preprocess"]["bias_correction"], atol=2e-3)
    residual, _ = mean_val_residual(out, data)
    np.testing.assert_allclose(residual, 0, atol=2e-3)


def test_calibrate_needs_something_to_do_and_held_out_faces(held_out_run, dataset, tmp_path):
    data, run = held_out_run
    text = one_line_error(invoke("calibrate", run / "model.pth", "--data-dir", data, "--out", tmp_path / "a.pth"))
    assert "--detector" in text and "--bias" in text and not (tmp_path / "a.pth").exists()
    original = tmp_path / "original"
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", original, "--quiet",
                    *sets(TINY + ["epochs=1", "validation=test"]))
    assert result.exit_code == 0, result.output
    assert torch.load(original / "model.pth", weights_only=True)["preprocess"]["bias_correction"] is None
    text = one_line_error(invoke("calibrate", original / "model.pth", "--bias", "--data-dir", dataset, "--out", tmp_path / "b.pth"))
    assert "validation split" in text and not (tmp_path / "b.pth").exists()
