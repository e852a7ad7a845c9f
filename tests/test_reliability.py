"""Unlucky and hostile inputs: outputs that cannot be written, runs started together, diverging
training, out-of-range config values, broken CSVs and checkpoints. Each ends in one line, keeps
what was finished, and touches nothing it should not."""

import errno
import json
import threading
from pathlib import Path

import pytest
import torch

from fkd_cli.config import resolve_config
from fkd_cli.errors import FkdError
from fkd_cli.outputs import claim_run_dir

from .helpers import TINY, invoke, one_line_error, sets




@pytest.fixture(scope="module")
def photos(tmp_path_factory, dataset):
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted((dataset / "test").iterdir())[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


# ---- outputs are checked before the work, and a late failure loses nothing else -----------------


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_predict_output_that_is_a_folder_or_has_no_folder(tiny_run, photos, tmp_path, option):
    (tmp_path / "taken").mkdir()
    text = one_line_error(invoke("predict", photos, "--model", tiny_run / "model.pth", option, tmp_path / "taken",
                                 "--out", tmp_path / "drawn"))
    assert "is a folder" in text
    assert not (tmp_path / "drawn").exists()  # refused before anything was read or written
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    text = one_line_error(invoke("predict", photos, "--model", tiny_run / "model.pth", option, a_file / "r.json", "--no-draw"))
    assert "is not a folder" in text and a_file.read_text() == "x"


def test_outputs_to_a_pipe_or_through_a_link_are_written_in_place(tiny_run, photos, tmp_path):
    """A pipe (like /dev/null, /dev/stdout or a shell's >(jq .)) is written to, never replaced by a
    file (as root, a rename over /dev/null turned the device into a file); a symbolic link is followed
    and kept."""
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    target = tmp_path / "results" / "faces.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "faces-link.csv"
    link.symlink_to(target)
    result = invoke("predict", photos, "--model", tiny_run / "model.pth", "--no-draw", "--json", fifo, "--csv", link)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and len(json.loads(received[0])["images"]) == 3
    assert link.is_symlink() and target.read_text().startswith("path,face,")
    assert sorted(p.name for p in target.parent.iterdir()) == ["faces.csv"]  # no temporary file left


def test_evaluate_outputs_checked_before_the_work(tiny_run, dataset, tmp_path):
    (tmp_path / "taken").mkdir()
    for option in ("--json", "--plot"):
        text = one_line_error(invoke("evaluate", "--model", tiny_run / "model.pth", "--data-dir", dataset,
                                     option, tmp_path / "taken"))
        assert option in text and "is a folder" in text and "nme" not in text


def test_unwritable_place_found_before_the_work(tiny_run, photos, tmp_path, monkeypatch):
    """Simulated (root, as in CI, ignores permissions): the probe file cannot be created."""
    from fkd_cli import outputs

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", denied)
    text = one_line_error(invoke("predict", photos, "--model", tiny_run / "model.pth", "--json", tmp_path / "r.json", "--no-draw"))
    assert "not writable" in text and "r.json" in text
    text = one_line_error(invoke("export", "--model", tiny_run / "model.pth", "--out", tmp_path / "m.onnx"))
    assert "not writable" in text and "--out" in text
    text = one_line_error(invoke("train", "--config", "fkd-best", "--out", tmp_path / "run", "--data-dir", tmp_path))
    assert "not writable" in text


def test_a_late_output_failure_keeps_the_other_outputs(tiny_run, photos, tmp_path, monkeypatch):
    """The disk fills while drawing: drawing stops with one line, JSON and CSV still get every result."""
    from fkd_cli import render

    drawn = []

    def disk_full(image, faces, out_path):
        if drawn:
            raise OSError(errno.ENOSPC, "No space left on device")
        drawn.append(out_path)
        Path(out_path).write_bytes(b"png")

    monkeypatch.setattr(render, "draw_faces", disk_full)
    result = invoke("predict", photos, "--model", tiny_run / "model.pth", "--detector", "none", "--out", tmp_path / "drawn",
                    "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device" in result.output and "drawing stopped after 1 of 3" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["images"]) == 3 and all(len(item["faces"]) == 1 for item in report["images"])
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4


def test_json_failure_at_the_end_still_writes_the_csv(tiny_run, photos, tmp_path, monkeypatch):
    from fkd_cli import outputs

    real = outputs.write_text

    def fail_json(path, text):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(outputs, "write_text", fail_json)
    result = invoke("predict", photos, "--model", tiny_run / "model.pth", "--no-draw", "--detector", "none",
                    "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--json" in result.output and "not written" in result.output
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4


# ---- run folders are claimed atomically ---------------------------------------------------------


def test_concurrent_claims_get_distinct_folders(tmp_path):
    claimed, barrier = [], threading.Barrier(8)

    def claim():
        barrier.wait()
        claimed.append(claim_run_dir(tmp_path / "runs" / "final"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(claimed)) == 8
    assert sorted(p.name for p in claimed) == sorted(["final"] + [f"final{n}" for n in range(2, 9)])


def test_two_trainings_never_share_a_folder(dataset, tmp_path):
    """Two `fkd train` processes started together with the same config and --out."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "fkd_cli", "train", "--config", "fkd-best", "--data-dir", str(dataset),
               "--out", str(tmp_path / "run"), "--quiet", *sets(TINY + ["epochs=1"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run2"]
    assert all((tmp_path / name / "model.pth").is_file() for name in ("run", "run2"))


def test_failed_run_leaves_no_empty_folder(tmp_path):
    one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# ---- divergence ----------------------------------------------------------------------------------


def test_diverging_weights_with_a_finite_loss_stop_cleanly(dataset, tmp_path):
    """lr=1e8: the loss stays finite for a while, the weights do not; no traceback in validation."""
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "r", "--quiet",
                                 *sets(TINY + ["lr=1e8"])))
    assert "training diverged" in text and "Traceback" not in text
    kept = (tmp_path / "r" / "model.pth").is_file()
    assert ("is kept in" in text) == kept and ("no checkpoint was written" in text) == (not kept)


# ---- config values ------------------------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("width=0", "width"), ("input_size=4", "input_size"), ("threads=-1", "threads"), ("num_workers=-2", "num_workers"),
    ("weight_decay=-1", "weight_decay"), ("dropout=1.5", "dropout"), ("face_margin=0", "face_margin"),
    ("lr=.nan", "lr"), ("lr=.inf", "lr"), ("rotation=-5", "rotation"), ("grad_clip=-1", "grad_clip"),
    ("detector_box_prob=2", "detector_box_prob"), ("std=[0]", "std"), ("norm_points=[0,0]", "norm_points"),
    ("name=../../x", "name"), ("name=a/b", "name"), ("keypoints=0", "keypoints"),
    ("ema_decay=1", "ema_decay"), ("ema_decay=-0.1", "ema_decay"), ("erasing_prob=1.5", "erasing_prob"),
])
def test_config_values_are_range_checked(override, key):
    with pytest.raises(FkdError, match=f"'{key}'"):
        resolve_config("fkd-best", [override])


def test_out_of_range_value_is_one_line_before_any_data(tmp_path):
    text = one_line_error(invoke("train", "--config", "fkd-best", "--set", "name=../../escape", "--data-dir", tmp_path / "none"))
    assert "'name'" in text and "data folder" not in text
    assert not (tmp_path.parent.parent / "escape").exists()


def test_norm_points_checked_against_the_data(dataset, tmp_path):
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "r",
                                 *sets(TINY + ["norm_points=[0,99]"])))
    assert "'norm_points'" in text and "0..67" in text


def test_yaml_error_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlr: [1e-3\nwidth: 8\n")
    text = one_line_error(invoke("train", "--config", bad))
    assert "line 3" in text and "column" in text


# ---- data edge cases ----------------------------------------------------------------------------


def _with_csv(tmp_path, dataset, mutate) -> Path:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    csv = copy / "training_frames_keypoints.csv"
    csv.write_text(mutate(csv.read_text().splitlines()))
    return copy


def test_header_only_csv(dataset, tmp_path):
    data = _with_csv(tmp_path, dataset, lambda lines: lines[0] + "\n")
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "r"))
    assert "header but no rows" in text


@pytest.mark.parametrize("value", ["inf", "-inf", "1e12"])
def test_infinite_or_absurd_coordinates(dataset, tmp_path, value):
    def mutate(lines):
        cells = lines[3].split(",")
        cells[5] = value
        lines[3] = ",".join(cells)
        return "\n".join(lines) + "\n"

    data = _with_csv(tmp_path, dataset, mutate)
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "r"))
    assert "row 4" in text and "infinite or beyond" in text


def test_duplicated_rows_warn_and_stay_on_one_side(dataset, tmp_path):
    from fkd_cli.data import read_split, train_val_split

    data = _with_csv(tmp_path, dataset, lambda lines: "\n".join(lines + lines[1:]) + "\n")  # every row twice
    training = read_split(data, "training")
    assert training.duplicates == len(training.paths) // 2
    train, val = train_val_split(training, 0.25, 0)
    assert not set(train.paths) & set(val.paths) and len(val.paths) == 2 * 6
    result = invoke("train", "--config", "fkd-best", "--data-dir", data, "--out", tmp_path / "r", *sets(TINY + ["epochs=1"]))
    assert result.exit_code == 0, result.output
    assert "appear on more than one row" in result.output


# ---- checkpoints --------------------------------------------------------------------------------


def test_empty_checkpoint_is_one_line(tmp_path, dataset):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for command in (["evaluate", "--data-dir", dataset, "--model", empty], ["export", "--model", empty, "--out", tmp_path / "m.onnx"],
                    ["train", "--resume", empty, "--data-dir", dataset]):
        assert "empty (0 bytes)" in one_line_error(invoke(*command))


def test_unsafe_pickle_message_names_its_cause(tmp_path, dataset):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pth"
    torch.save({"format": "fkd-checkpoint", "x": Evil()}, evil)
    text = one_line_error(invoke("evaluate", "--data-dir", dataset, "--model", evil))
    assert "refused" in text and "system" in text


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_last_one(dataset, tmp_path, monkeypatch):
    """The disk fills during training: the epoch whose checkpoint cannot be saved ends the run with one line,
    and the previous epoch's files stay whole, to --resume from."""
    from fkd_cli import checkpoint

    real, saved = torch.save, []

    def disk_fills(obj, path, *args, **kwargs):
        if len(saved) >= 2:  # the first epoch's model.pth and last.pth, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(path)
        real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", disk_fills)
    run = tmp_path / "run"
    text = one_line_error(invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", run, "--quiet",
                                 *sets([*TINY, "epochs=3"])))
    assert "last.pth" in text or "model.pth" in text
    assert "disk full" in text
    kept = torch.load(run / "last.pth", weights_only=True)
    assert kept["epoch"] == 1  # the first epoch's, whole
    assert not list(run.glob(".*.tmp"))  # no half-written file left behind
