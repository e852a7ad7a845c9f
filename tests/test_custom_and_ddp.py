"""Own data with K != 68 keypoints, and DDP training through torchrun (gloo on CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import FLIP_5, TINY_BASE, invoke, make_dataset, one_line_error, sets

FIVE = TINY_BASE + [f"flip_permutation={FLIP_5}", "norm_points=[0, 1]", "regions={eyes: [0, 1], nose: [2], mouth: [3, 4]}"]




def test_five_point_set_end_to_end(dataset5, tmp_path):
    run = tmp_path / "five"
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", run, "--quiet", *sets(FIVE))
    assert result.exit_code == 0, result.output
    pp = torch.load(run / "model.pth", weights_only=True)["preprocess"]
    assert pp["num_keypoints"] == 5 and pp["flip_permutation"] == FLIP_5 and pp["norm_points"] == [0, 1]

    report = tmp_path / "eval.json"
    result = invoke("evaluate", "--model", run / "model.pth", "--data-dir", dataset5, "--json", report, "--boxes", "gt")
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())
    assert metrics["images"] == 8 and "regions" not in metrics and metrics["nme"] > 0

    predictions = tmp_path / "p.json"
    result = invoke("predict", dataset5 / "test", "--model", run / "model.pth", "--detector", "none",
                    "--json", predictions, "--out", tmp_path / "drawn")
    assert result.exit_code == 0, result.output
    report = json.loads(predictions.read_text())
    assert report["regions"] == {"eyes": [0, 1], "nose": [2], "mouth": [3, 4]}  # the config's own regions
    faces = [f for i in report["images"] for f in i["faces"]]
    assert len(faces) == 8 and all(len(f["keypoints"]) == 5 for f in faces)
    assert all(len(f["keypoint_scores"]) == 5 for f in faces)  # a 5-point shape model calibrates too
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 8

    result = invoke("export", "--model", run / "model.pth", "--format", "all")
    assert result.exit_code == 0, result.output
    onnx_json = tmp_path / "onnx.json"
    result = invoke("predict", dataset5 / "test", "--model", run / "model.onnx", "--detector", "none", "--json", onnx_json, "--no-draw")
    assert result.exit_code == 0, result.output
    onnx_faces = [f for i in json.loads(onnx_json.read_text())["images"] for f in i["faces"]]
    diff = torch.tensor([f["keypoints"] for f in onnx_faces]) - torch.tensor([f["keypoints"] for f in faces])
    assert diff.abs().max() <= 0.01 + 1e-6


def test_flip_without_permutation_is_an_error(dataset5, tmp_path):
    base = [s for s in FIVE if not s.startswith("flip_permutation")] + ["flip=true"]
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", tmp_path / "x", *sets(base)))
    assert "flip_permutation" in text
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", tmp_path / "x",
                                 *sets(base + ["flip_permutation=[0, 1, 2, 3, 3]"])))
    assert "flip_permutation" in text
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", tmp_path / "y", "--quiet",
                    *sets(base + ["flip=false", "epochs=1"]))
    assert result.exit_code == 0, result.output


def test_nme_weighted_loss_needs_the_layouts_norm_points(dataset5, tmp_path):
    """loss=l1_nme divides by the distance between the norm points: a 5-point layout must name them."""
    base = [s for s in FIVE if not s.startswith("norm_points")] + ["loss=l1_nme"]
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", tmp_path / "x", *sets(base)))
    assert "l1_nme" in text and "norm_points" in text
    assert not (tmp_path / "x").exists()  # refused before anything was written
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset5, "--out", tmp_path / "y", "--quiet",
                    *sets(FIVE + ["loss=l1_nme"]))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "y" / "model.pth").exists()


def _torchrun(nproc: int, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "fkd_cli", "train", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_two_processes_train_and_evaluate(dataset, tmp_path):
    run = tmp_path / "ddp"
    proc = _torchrun(2, "--config", "fkd-best", "--data-dir", dataset, "--out", run, "--quiet", *sets(
        TINY_BASE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # only rank 0 wrote, only the run folder
    data = torch.load(run / "model.pth", weights_only=True)
    assert data["format"] == "fkd-checkpoint" and not any(k.startswith("module.") for k in data["state_dict"])
    result = invoke("evaluate", "--model", run / "model.pth", "--data-dir", dataset, "--boxes", "gt")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_one_step_with_two_half_batches_equals_one_full_batch(tmp_path):
    """DDP averages gradients: 2 processes x batch B/2 must give 1 process x batch B's weights."""
    data = make_dataset(tmp_path / "d", n_train=8, n_test=2, seed=3)
    # no randomness in the samples, no batch-dependent layers (BatchNorm), plain SGD: one step each
    args = sets(["epochs=1", "batch_size=8", "val_fraction=0", "model=seed-final", "dropout=0", "input_size=32",
                  "framing=face", "detector=none", "rotation=0", "scale_jitter=0", "shift_jitter=0", "flip=false",
                  "color_jitter=0", "whole_image_prob=0", "optimizer=sgd", "schedule=constant", "lr=0.5",
                  "loss=mse"])
    single = _torchrun(1, "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "one", "--quiet", *args, cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    double = _torchrun(2, "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "two", "--quiet", *args, cwd=tmp_path)
    assert double.returncode == 0, double.stderr[-3000:]
    initial = torch.load(tmp_path / "one" / "model.pth", weights_only=True)["state_dict"]
    a = torch.load(tmp_path / "one" / "model.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "two" / "model.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() == initial.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    # and the step did move the weights (a test that cannot fail proves nothing)
    from fkd_cli.models import build_model

    torch.manual_seed(0)
    fresh = build_model("seed-final", 68, in_channels=3, input_size=32, dropout=0.0).state_dict()
    assert any(not torch.allclose(fresh[k], a[k]) for k in a)
