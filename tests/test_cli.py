"""The command line as people from other tools use it: version, completion, help, pipes, quiet runs,
progress in logs, listing config keys, face filters."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fkd_cli import __version__

from .helpers import TINY, invoke, sets


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"fkd {__version__}"


def test_completion_installs(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    proc = subprocess.run([sys.executable, "-m", "fkd_cli", "--install-completion", "bash"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installed = list(tmp_path.rglob("*fkd*")) + [tmp_path / ".bashrc"]
    assert any(p.is_file() and "complete" in p.read_text().lower() for p in installed if p.exists())


def test_help_has_examples_and_no_bool_placeholders():
    for command in ("download-data", "train", "evaluate", "predict", "calibrate", "export"):
        result = invoke(command, "--help")
        assert result.exit_code == 0, command
        assert "Example:" in result.output, command
        ours = [line for line in result.output.splitlines() if "--help" not in line]  # typer's own option keeps it
        assert not any("<bool>" in line for line in ours), command
    assert "INPUTS" in invoke("predict", "--help").output


def test_json_and_csv_to_stdout_pipe_cleanly(astronaut):
    result = invoke("predict", astronaut, "--no-draw", "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # nothing but the JSON on stdout: the table went to stderr
    assert len(report["images"][0]["faces"]) == 1 and "faces" in result.stderr
    result = invoke("predict", astronaut, "--no-draw", "--csv", "-", "--quiet")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][0] == "path" and len(rows) == 2
    assert "only one output" in invoke("predict", astronaut, "--json", "-", "--csv", "-").output
    result = invoke("predict", astronaut, astronaut, "--no-draw", "--jsonl", "-")
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # one JSON document a line, nothing else
    assert [line["path"] for line in lines] == [str(astronaut)] and lines[0]["frame"] is None


def test_quiet_prints_nothing_but_writes(astronaut, tmp_path):
    result = invoke("predict", astronaut, "--quiet", "--json", tmp_path / "r.json", "--out", tmp_path / "drawn")
    assert result.exit_code == 0 and result.output == ""
    assert json.loads((tmp_path / "r.json").read_text())["images"][0]["faces"]


def test_plain_progress_lines_for_logs(capsys):
    from fkd_cli.render import PlainProgress

    bar = PlainProgress("evaluate", 10, every=0.0)
    bar.update(3)
    bar.update(10)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("evaluate: 3/10 (30%)") and lines[1].startswith("evaluate: 10/10 (100%)")


def test_show_config_lists_every_key_with_its_meaning():
    result = invoke("train", "--show-config")
    assert result.exit_code == 0
    for key, meaning in (("fraction", "smoke runs"), ("face_margin", "landmark box"), ("lr", "learning rate")):
        line = next(line for line in result.output.splitlines() if f" {key} " in line)
        assert meaning in line or meaning in result.output
    with_config = invoke("train", "--show-config", "--config", "final")
    assert with_config.exit_code == 0 and "final" in with_config.output


def test_fraction_trains_on_a_share(dataset, tmp_path):
    result = invoke("train", "--config", "fkd-best", "--data-dir", dataset, "--out", tmp_path / "r",
                    *sets(TINY + ["epochs=1", "fraction=0.5"]))
    assert result.exit_code == 0, result.output
    assert "9 train / 3 val images" in result.output  # 24 training images: half, then a quarter of that held out


def test_fraction_shares_are_nested_for_learning_curves():
    import torch

    from fkd_cli.data import Split, training_share

    training = Split("training", [Path(f"img{i}.jpg") for i in range(40)], torch.arange(40.0).view(40, 1, 1).expand(40, 2, 2))
    quarter, half = (training_share(training, f, seed=0) for f in (0.25, 0.5))
    assert (len(quarter.paths), len(half.paths)) == (10, 20)
    assert set(quarter.paths) < set(half.paths)
    assert torch.equal(half.keypoints[:, 0, 0], torch.tensor([float(p.stem[3:]) for p in half.paths]))  # rows stay paired
    assert training_share(training, 0.5, seed=1).paths != half.paths  # the seed picks the share


def test_download_data_takes_data_dir(tmp_path, dataset):
    result = invoke("download-data", "--data-dir", tmp_path / "d", "--from", dataset, "--quiet")
    assert result.exit_code == 0 and (tmp_path / "d" / "manifest.json").is_file()


def test_conf_and_max_faces(tmp_path, astronaut):
    from PIL import Image

    two = Image.new("RGB", (1100, 560), (30, 30, 30))
    face = Image.open(astronaut).convert("RGB")
    two.paste(face, (0, 0))
    two.paste(face.resize((300, 300)), (700, 100))
    two.save(tmp_path / "two.png")
    out = tmp_path / "r.json"

    def faces(*extra):
        assert invoke("predict", tmp_path / "two.png", "--no-draw", "--json", out, *extra).exit_code == 0
        return json.loads(out.read_text())["images"][0]["faces"]

    both = faces()
    assert len(both) == 2 and all(0 <= f["score"] <= 1 for f in both)
    (largest,) = faces("--max-faces", "1")
    widths = [f["box"][2] - f["box"][0] for f in both]
    assert largest["box"][2] - largest["box"][0] == pytest.approx(max(widths))
    assert len(faces("--conf", "0.5")) == 2  # both faces score far above one half
    from fkd_cli import load_model
    from fkd_cli.images import read_image

    model = load_model()
    scores = sorted(d.score for d in model.detect(read_image(tmp_path / "two.png")))
    if scores[0] < scores[-1]:  # a threshold between the two scores keeps exactly the better face
        strict = model.configured(conf=(scores[0] + scores[-1]) / 2).predict(tmp_path / "two.png")
        assert len(strict) == 1 and strict.scores[0] == pytest.approx(scores[-1])
    assert "--conf" in invoke("predict", tmp_path / "two.png", "--conf", "1.5").output


def test_threads_option_sets_both_runtimes(astronaut):
    """--threads 1: PyTorch (when loaded) and the ONNX Runtime sessions made after it use one thread;
    without PyTorch loaded the sessions still follow it."""
    sessions = ("m.backend.session.get_session_options().intra_op_num_threads, "
                "m.detector._mtcnn.pnet.session.get_session_options().intra_op_num_threads")
    for code, expected in (
            ("import torch, fkd_cli.cli as cli; cli._set_threads(1); from fkd_cli import load_model; "
             f"m = load_model(); print(torch.get_num_threads(), {sessions})", ["1", "1", "1"]),
            ("import sys, fkd_cli.cli as cli; cli._set_threads(1); from fkd_cli import load_model; "
             f"m = load_model(); print('torch' in sys.modules, {sessions})", ["False", "1", "1"])):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == expected
    result = subprocess.run([sys.executable, "-m", "fkd_cli", "predict", str(astronaut), "--threads", "1", "--no-draw",
                             "--json", "-", "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and len(json.loads(result.stdout)["images"][0]["faces"]) == 1


def test_predicting_does_not_import_torch_or_pandas(astronaut, tmp_path):
    """On a machine without a GPU, predicting with the bundled model imports no torch (1.6 to 3 s of
    every start on a 2-core machine: the networks run on ONNX Runtime, the rest is numpy, OpenCV and
    Pillow) and no pandas (0.3-1 s, only for reading CSVs): in Python and through the command, with a
    drawing, a JSON file and aligned crops written. A real prediction must still work."""
    from fkd_cli.backends import could_have_gpu

    if could_have_gpu():
        pytest.skip("a GPU may be present: the default device is then PyTorch's to find")
    code = ("import sys; from fkd_cli import load_model; r = load_model().predict(sys.argv[1]); "
            "print(len(r), 'torch' in sys.modules, 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(astronaut)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "False", "False"]
    code = ("import sys; from fkd_cli.cli import main; sys.argv = ['fkd', 'predict', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", code, str(astronaut), "--out", str(out), "--save-crops", "--quiet",
                           "--json", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["False", "False"]
    assert len(json.loads((tmp_path / "p.json").read_text())["images"][0]["faces"]) == 1
    assert (out / "astronaut.png").is_file() and len(list((out / "crops").iterdir())) == 1
