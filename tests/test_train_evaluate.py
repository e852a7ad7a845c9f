"""`fkd train` and `fkd evaluate` the way users run them, on tiny synthetic data."""

import json
import os
import pickle

import pandas as pd
import pytest
import torch
from PIL import Image

from fkd_cli.checkpoint import load_checkpoint
from fkd_cli.errors import FkdError

from .helpers import TINY, invoke, one_line_error, sets




def test_run_folder_has_everything(tiny_run):
    for name in ("model.pth", "last.pth", "config.yaml", "metrics.csv", "loss.png"):
        assert (tiny_run / name).is_file(), name
    history = pd.read_csv(tiny_run / "metrics.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "val_loss", "val_nme", "lr", "seconds"} <= set(history.columns)


def test_checkpoint_is_self_describing_and_safe(tiny_run):
    data = torch.load(tiny_run / "model.pth", weights_only=True)
    assert data["format"] == "fkd-checkpoint" and data["arch"] == "fkdnet"
    pp = data["preprocess"]
    assert pp["input_size"] == 32 and pp["num_keypoints"] == 68 and pp["framing"] == "face"
    assert len(pp["flip_permutation"]) == 68 and pp["norm_points"] == [36, 45]
    assert data["config"]["epochs"] == 2 and "nme" in data["metrics"] and data["fkd_version"]


def test_original_run_validates_on_test_and_reports_train_loss_in_its_units(dataset, tmp_path):
    """`validation: test` trains on all of training/ and names test/ in the output; for the original's
    own configuration (MSE of (k - 100) / 50 on its 224 frame) the train MSE column is the loss itself."""
    run = tmp_path / "orig"
    result = invoke("train", "--config", "final.yaml", "--data-dir", dataset, "--out", run,
                    *sets(["epochs=1", "validation=test", "batch_size=8"]))
    assert result.exit_code == 0, result.output
    assert "24 train / 8 test images" in result.output and "test MSE" in result.output
    data = torch.load(run / "model.pth", weights_only=True)["data"]
    assert data["train_images"] == 24 and data["val_images"] == 8
    saved = torch.load(run / "model.pth", weights_only=True)
    assert saved["preprocess"]["framing"] == "squash" and saved["config"]["model"] == "seed-final-bn"
    row = pd.read_csv(run / "metrics.csv").iloc[0]
    # the original's own frame: its units are the targets themselves
    assert row["train_mse_seed"] == pytest.approx(row["train_loss"], rel=1e-4)
    # the same figure through `fkd evaluate` (one evaluation loop), and a prediction on the whole image
    report = tmp_path / "eval.json"
    result = invoke("evaluate", "--model", run / "model.pth", "--data-dir", dataset, "--json", report)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["mse_seed"] == pytest.approx(row["val_loss"], rel=1e-4)
    image = sorted((dataset / "test").iterdir())[0]
    result = invoke("predict", image, "--model", run / "model.pth", "--json", tmp_path / "p.json", "--out", tmp_path / "drawn")
    assert result.exit_code == 0, result.output
    face = json.loads((tmp_path / "p.json").read_text())["images"][0]["faces"][0]
    width, height = Image.open(image).size
    assert face["box"] == [0.0, 0.0, float(width), float(height)] and len(face["keypoints"]) == 68


def test_original_networks_have_the_layers_their_docstrings_give():
    """The final network as the original's code has it, and the guess at its first one in that style:
    5x5 convs with BatchNorm, 2x2 pooling, the whole final map flattened into a 1024-unit layer."""
    from torch import nn

    from fkd_cli.models import build_model

    for name, filters, flat in (("seed-final-bn", [16, 32, 64], 64 * 24 * 24), ("seed-first-bn", [16, 32, 64, 128], 128 * 10 * 10)):
        net = build_model(name, 68, in_channels=1, input_size=224)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == filters and all(c.kernel_size == (5, 5) for c in convs)
        assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(filters)
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [(l.in_features, l.out_features) for l in linears] == [(flat, 1024), (1024, 136)]
        assert net(torch.zeros(2, 1, 224, 224)).shape == (2, 136)


def test_fixed_seed_repeats_on_cpu(dataset, tmp_path):
    outs = []
    for name in ("a", "b"):
        result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / name, "--quiet",
                        *sets(TINY + ["epochs=1"]))
        assert result.exit_code == 0, result.output
        outs.append(torch.load(tmp_path / name / "model.pth", weights_only=True)["state_dict"])
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_run_folder_is_never_overwritten(dataset, tmp_path):
    args = ["train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "r", "--quiet", *sets(TINY + ["epochs=1"])]
    assert invoke(*args).exit_code == 0
    assert invoke(*args).exit_code == 0
    assert (tmp_path / "r" / "model.pth").is_file() and (tmp_path / "r2" / "model.pth").is_file()


def test_evaluate_reports_every_metric(tiny_run, dataset, tmp_path):
    out = tmp_path / "eval.json"
    plot = tmp_path / "ced.png"
    result = invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset, "--json", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for key in ("nme", "nme_median", "fr_8", "fr_10", "auc_10", "mse_seed", "regions", "images", "model", "missed"):
        assert key in report, key
    assert report["images"] == 8 and set(report["regions"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert plot.stat().st_size > 1000
    assert "nme" in result.output


def test_evaluate_per_image_csv_matches_the_summary(tiny_run, dataset, tmp_path):
    out, rows = tmp_path / "eval.json", tmp_path / "per-image.csv"
    result = invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset, "--json", out,
                    "--per-image", rows, "--quiet")
    assert result.exit_code == 0, result.output
    report, table = json.loads(out.read_text()), pd.read_csv(rows)
    assert len(table) == report["images"] == 8
    assert set(table["image"]) == {p.name for p in (dataset / "test").iterdir()}
    assert table["nme"].mean() == pytest.approx(report["nme"], rel=1e-4)
    assert int(table["missed"].sum()) == report["missed"]
    for region, value in report["regions"].items():
        assert table[f"nme_{region}"].mean() == pytest.approx(value, rel=1e-4)
    assert table["mse_seed"].mean() == pytest.approx(report["mse_seed"], rel=1e-4)
    assert table["mse_seed"].nunique() > 1  # each image's own figure, not the summary repeated
    # to standard output, cleanly: the table goes to stderr
    piped = invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset, "--per-image", "-", "--quiet")
    assert piped.exit_code == 0 and piped.stdout.startswith("image,nme,missed")
    # an unwritable target is refused before any work
    assert "--per-image" in one_line_error(invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset,
                                                   "--per-image", tmp_path / "no" / "such" / "x.csv"))



def test_evaluate_recrop_tta_measures_the_accurate_mode(tiny_run, dataset):
    reports = []
    for extra in ((), ("--recrop-tta",)):
        result = invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset, "--json", "-", "--quiet", *extra)
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.output))
    assert reports[0]["recrop_tta"] is False and reports[1]["recrop_tta"] is True  # fkd-best's own setting, then on
    assert reports[0]["nme"] != reports[1]["nme"]  # a second crop a face: other predictions

def test_evaluate_gt_boxes_and_val_split(tiny_run, dataset, tmp_path):
    out = tmp_path / "gt.json"
    result = invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset, "--boxes", "gt",
                    "--split", "val", "--json", out, "--flip-tta")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["boxes"] == "gt" and report["images"] == 6 and report["flip_tta"] is True


def test_resume_continues_to_the_configured_epochs(dataset, tmp_path):
    run = tmp_path / "run"
    args = ["--data-dir", dataset, "--quiet"]
    assert invoke("train", "--config", "fkd-best", "--out", run, *args, *sets(TINY + ["epochs=1"])).exit_code == 0
    # pretend the run was meant to be 2 epochs: the checkpoint's config is what resume follows
    state = torch.load(run / "last.pth", weights_only=True)
    state["config"]["epochs"] = 2
    state["scheduler"]["total_steps"] = state["scheduler"]["total_steps"] * 2
    torch.save(state, run / "last.pth")
    result = invoke("train", "--resume", run / "last.pth", *args)  # no --config: the run's own is used
    assert result.exit_code == 0, result.output
    history = pd.read_csv(run / "metrics.csv")
    assert list(history["epoch"]) == [1, 2]
    result = invoke("train", "--config", "fkd-best", "--resume", run / "last.pth", *args)
    assert "already finished" in one_line_error(result)


def test_interrupted_run_saves_last_and_resumes_mid_epoch(dataset, tmp_path, monkeypatch):
    """SIGINT between batches: last.pth is saved with the batches done; --resume finishes the run."""
    import signal

    from fkd_cli import trainer as engine

    calls = {"n": 0}

    class Interrupting(engine.SilentReporter):
        def batch(self, epoch, index, loss):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGINT)

    from fkd_cli.config import resolve_config

    cfg = resolve_config("fkd-best", TINY + ["epochs=2"])
    result = engine.train(cfg, dataset, tmp_path / "r", reporter=Interrupting())
    assert result.stopped_early and not result.history
    state = load_checkpoint(tmp_path / "r" / "last.pth")
    assert state["batches_done"] == 2 and state["epoch"] == 0
    resumed = engine.train(cfg, dataset, resume=tmp_path / "r" / "last.pth")
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert (tmp_path / "r" / "model.pth").is_file()


def test_nan_loss_stops_with_a_clear_message(dataset, tmp_path):
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "nan", "--quiet",
                    *sets(TINY + ["lr=1e30", "optimizer=sgd", "schedule=constant", "loss=mse"]))
    text = one_line_error(result)
    assert "diverged" in text


def test_train_needs_a_config_or_resume(tmp_path):
    assert "--config is required" in one_line_error(invoke("train", "--data-dir", tmp_path))


def test_missing_data_dir_is_one_line(tmp_path):
    result = invoke("train", "--config", "final.yaml", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "o")
    text = one_line_error(result)
    assert "fkd download-data" in text and len(text.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unknown_config_key_is_one_line(dataset, tmp_path):
    result = invoke("train", "--config", "final.yaml", "--data-dir", dataset, "--set", "epocs=3", "--out", tmp_path / "o")
    text = one_line_error(result)
    assert "epocs" in text and "epochs" in text and len(text.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_is_refused(tmp_path, dataset, tiny_run):
    bad = tmp_path / "bad.pth"
    bad.write_bytes((tiny_run / "model.pth").read_bytes()[:300])
    text = one_line_error(invoke("evaluate", "--model", bad, "--data-dir", dataset))
    assert "bad.pth" in text and len(text.splitlines()) == 1
    not_ours = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, not_ours)
    assert "not an fkd checkpoint" in one_line_error(invoke("evaluate", "--model", not_ours, "--data-dir", dataset))


class _Exploit:
    """Unpickling this would run `touch` through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path, dataset):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"format": "fkd-checkpoint", "payload": _Exploit(marker)}, evil, pickle_protocol=2)
    text = one_line_error(invoke("evaluate", "--model", evil, "--data-dir", dataset))
    assert "refused" in text and not marker.exists()
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    one_line_error(invoke("predict", str(dataset / "test"), "--model", raw, "--no-draw"))
    assert not marker.exists()


def test_load_checkpoint_rejects_directory(tmp_path):
    with pytest.raises(FkdError):
        load_checkpoint(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_training_with_a_detector_stores_its_rule(dataset, tmp_path, detector):
    """Calibration runs the detector over the training set; on drawn faces it may find none, and
    then the identity rule is stored with the number of faces it was measured on."""
    run = tmp_path / detector
    overrides = [s for s in TINY if not s.startswith("detector")] + ["epochs=1", f"detector={detector}"]
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", run, "--quiet", *sets(overrides))
    assert result.exit_code == 0, result.output
    rule = torch.load(run / "model.pth", weights_only=True)["preprocess"]["rule"]
    assert rule["detector"] == detector and isinstance(rule["samples"], int) and rule["scale"] > 0


def test_teachers_predict_their_mean_in_target_units(tiny_run, tmp_path):
    """Distillation's teacher is the mean of its checkpoints' raw outputs: a copy whose last layer is
    shifted by 0.2 target units moves the mean of the pair by exactly 0.1."""
    from fkd_cli.checkpoint import build_from_checkpoint, save_checkpoint
    from fkd_cli.distill import Teacher
    from fkd_cli.framing import Preprocess

    data = load_checkpoint(tiny_run / "model.pth")
    shifted = {k: v for k, v in data.items() if k not in ("format", "format_version", "fkd_version")}
    last_bias = [k for k in data["state_dict"] if k.endswith("bias")][-1]
    shifted["state_dict"] = {**data["state_dict"], last_bias: data["state_dict"][last_bias] + 0.2}
    save_checkpoint(tmp_path / "shifted.pth", shifted)
    pp = Preprocess.from_dict(data["preprocess"])
    inputs = torch.randn(3, pp.channels, pp.input_size, pp.input_size)
    with torch.no_grad():
        own = build_from_checkpoint(data)(inputs)[:, : 2 * pp.num_keypoints]  # coordinates: the doubt head's follow
    pair = Teacher([str(tiny_run / "model.pth"), str(tmp_path / "shifted.pth")], pp, torch.device("cpu"))
    assert len(pair) == 2
    torch.testing.assert_close(pair(inputs), own + 0.1, atol=1e-4, rtol=0)


def test_distillation_run_and_a_mismatched_teacher(tiny_run, dataset, tmp_path):
    teacher = tiny_run / "model.pth"
    run = tmp_path / "student"
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", run, "--quiet",
                    *sets(TINY + ["epochs=1", f"teachers=['{teacher}']", "distill_weight=0.7"]))
    assert result.exit_code == 0, result.output
    cfg = load_checkpoint(run / "model.pth")["config"]
    assert cfg["teachers"] == [str(teacher)] and cfg["distill_weight"] == 0.7
    # the teacher changes what is learnt: the same seeded run without it ends with other weights
    plain = tmp_path / "plain"
    assert invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", plain, "--quiet",
                  *sets(TINY + ["epochs=1"])).exit_code == 0
    taught, alone = (torch.load(r / "model.pth", weights_only=True)["state_dict"] for r in (run, plain))
    assert not all(torch.equal(taught[k], alone[k]) for k in taught)
    # a teacher trained on other crops would teach nonsense: refused before any image is decoded
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "bad",
                                 *sets(TINY + ["input_size=40", f"teachers=['{teacher}']"])))
    assert "teachers" in text and "input_size" in text and str(teacher) in text
    assert not (tmp_path / "bad").exists()
    missing = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "gone",
                                    *sets(TINY + [f"teachers=['{tmp_path / 'none.pth'}']"])))
    assert "none.pth" in missing


def test_all_data_model_takes_its_twins_score_calibration(tiny_run, dataset, tmp_path):
    """A model trained on all of training/ has no held-out face to measure its score scales on: the
    tool refuses to guess and copies them from a twin trained with a held-out split when asked."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "calibrate_scores.py"
    run = tmp_path / "all"
    trained = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", run, *sets(TINY + ["epochs=1", "val_fraction=0"]))
    assert trained.exit_code == 0, trained.output
    output = " ".join(trained.output.split())
    assert "24 train / 0 val images (no validation: model.pth is the last epoch)" in output
    assert "no validation: model.pth is epoch 1" in output and "best val" not in output
    assert "nan" not in output  # the columns a run without validation has no figure for show "-"
    model = run / "model.pth"
    before = load_checkpoint(model)
    assert before["metrics"] == {"epoch": 1}  # no validation figure, rather than a made-up one
    assert before["preprocess"]["confidence"] is None
    refused = subprocess.run([sys.executable, str(tool), str(model), "--data-dir", str(dataset)], capture_output=True, text=True)
    assert refused.returncode != 0 and "--scales-from" in refused.stderr and "Traceback" not in refused.stderr
    copied = subprocess.run([sys.executable, str(tool), str(model), "--scales-from", str(tiny_run / "model.pth")],
                            capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    twin = load_checkpoint(tiny_run / "model.pth")
    after = load_checkpoint(model)
    assert after["preprocess"]["confidence"] == twin["preprocess"]["confidence"] is not None
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())  # weights untouched


def test_weight_average_follows_the_ramped_decay():
    from fkd_cli.ema import WeightAverage, ramped_decay

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    average.update(model)  # the first update copies the weights
    for step in range(1, 4):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model(torch.randn(4, 2))  # moves BatchNorm's running statistics and its batch counter
        average.update(model)
        d = ramped_decay(0.9, step)
        expected = d * expected + (1 - d) * model[0].weight.detach()
    assert torch.allclose(average.module[0].weight, expected)
    assert not torch.allclose(average.module[0].weight, model[0].weight)
    assert int(average.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 3
    assert average.updates == 4 and 0 < ramped_decay(0.9, 4) < ramped_decay(0.9, 4000) < 0.9


def test_averaged_weights_are_the_model_and_resume_exactly(dataset, tmp_path, monkeypatch):
    """ema_decay: model.pth holds the average, last.pth the raw weights as well; a run stopped
    after the last batch of its first epoch and resumed ends with the same average as a run that
    never stopped (mid-epoch, the augmentation of the remaining batches is drawn anew)."""
    from fkd_cli import trainer as engine
    from fkd_cli.config import resolve_config

    cfg = resolve_config("fkd-best", TINY + ["epochs=2", "ema_decay=0.99"])
    whole = engine.train(cfg, dataset, tmp_path / "whole")
    last = load_checkpoint(tmp_path / "whole" / "last.pth")
    assert last["ema_updates"] > 1
    assert any(not torch.equal(last["state_dict"][k], last["train_state_dict"][k]) for k in last["state_dict"])
    best = load_checkpoint(tmp_path / "whole" / "model.pth")
    assert "train_state_dict" not in best and set(best["state_dict"]) == set(last["train_state_dict"])

    import signal

    class StopAfterFirstEpoch(engine.SilentReporter):
        def start(self, total_epochs, batches, info):
            self.batches = batches

        def batch(self, epoch, index, loss):
            if index == self.batches - 1:
                os.kill(os.getpid(), signal.SIGINT)

    first = engine.train(cfg, dataset, tmp_path / "split", reporter=StopAfterFirstEpoch())
    assert first.stopped_early
    engine.train(cfg, dataset, resume=tmp_path / "split" / "last.pth")
    again = load_checkpoint(tmp_path / "split" / "last.pth")
    assert again["ema_updates"] == last["ema_updates"]
    for key in ("state_dict", "train_state_dict"):
        assert all(torch.equal(again[key][k], last[key][k]) for k in last[key]), key
    assert [row["val_nme"] for row in whole.history] == list(pd.read_csv(tmp_path / "split" / "metrics.csv")["val_nme"])


def test_laplace_loss_trains_a_scale_head_that_stays_out_of_the_model(dataset, tmp_path):
    """loss: laplace trains a per-coordinate scale beside the network; model.pth holds the network alone
    (the same keys as an L1 run's), last.pth the scale head too, and --resume carries it on."""
    run, plain = tmp_path / "laplace", tmp_path / "l1"
    args = ["--data-dir", dataset, "--quiet"]
    result = invoke("train", "--config", "fkd-best", "--out", run, *args, *sets(TINY + ["epochs=1", "loss=laplace"]))
    assert result.exit_code == 0, result.output
    assert invoke("train", "--config", "fkd-best", "--out", plain, *args, *sets(TINY + ["epochs=1"])).exit_code == 0
    model = torch.load(run / "model.pth", weights_only=True)
    assert set(model["state_dict"]) == set(torch.load(plain / "model.pth", weights_only=True)["state_dict"])
    assert "scale_state_dict" not in model
    last = torch.load(run / "last.pth", weights_only=True)
    scale = last["scale_state_dict"]
    assert scale["weight"].shape == (136, 256) and scale["weight"].abs().sum() > 0  # trained away from its zero init
    last["config"]["epochs"] = 2
    last["scheduler"]["total_steps"] *= 2
    torch.save(last, run / "last.pth")
    result = invoke("train", "--resume", run / "last.pth", *args)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2]
    result = invoke("evaluate", "--model", run / "model.pth", "--data-dir", dataset, "--boxes", "gt")
    assert result.exit_code == 0, result.output
    # a resumed laplace run needs its scale head
    del last["scale_state_dict"]
    torch.save(last, run / "last.pth")
    assert "no scale head" in one_line_error(invoke("train", "--resume", run / "last.pth", *args))


def test_set_inference_makes_the_accurate_mode_a_models_default(tiny_run, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from fkd_cli.inference import load_predictor

    model = tmp_path / "model.pth"
    shutil.copy(tiny_run / "model.pth", model)
    tool = Path(__file__).parents[1] / "tools" / "set_inference.py"
    done = subprocess.run([sys.executable, str(tool), str(model), "--refine-steps", "0", "--flip-tta", "false",
                           "--recrop-tta", "true"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    predictor = load_predictor(model, backend="pytorch")
    assert predictor.pp.recrop_tta and predictor.info["config"]["recrop_tta"] is True
    assert not load_predictor(tiny_run / "model.pth", backend="pytorch").pp.recrop_tta  # the source is untouched
    done = subprocess.run([sys.executable, str(tool), str(model), "--refine-steps", "0", "--flip-tta", "false"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and load_predictor(model, backend="pytorch").pp.recrop_tta  # left out: kept
