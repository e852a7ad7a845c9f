"""`fkd export`: ONNX and TorchScript files that agree with PyTorch and run in predict/evaluate."""

import json

import pytest
import torch

from fkd_cli.export import PREPROCESS_KEY, export_model
from fkd_cli.errors import FkdError

from .conftest import invoke, one_line_error

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(tiny_run):
    result = invoke("export", "--model", tiny_run / "model.pth", "--format", "all")
    assert result.exit_code == 0, result.output
    assert "max |diff|" in result.output
    return tiny_run / "model.onnx", tiny_run / "model.pt"


def test_metadata_round_trips(exported, tiny_run):
    onnx_path, ts_path = exported
    original = torch.load(tiny_run / "model.pth", weights_only=True)["preprocess"]
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props[PREPROCESS_KEY]) == original
    extra = {f"{PREPROCESS_KEY}.json": ""}
    torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra[f"{PREPROCESS_KEY}.json"]) == original
    # dynamic batch dimension
    dim = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"


def test_predictions_agree_across_backends(exported, tiny_run, dataset, tmp_path):
    onnx_path, ts_path = exported
    results = {}
    for name, model in (("pth", tiny_run / "model.pth"), ("onnx", onnx_path), ("pt", ts_path)):
        out = tmp_path / f"{name}.json"
        result = invoke("predict", dataset / "test", "--model", model, "--detector", "none", "--json", out,
                        "--no-draw", "--batch-size", "3")
        assert result.exit_code == 0, result.output
        results[name] = torch.tensor([f["keypoints"] for i in json.loads(out.read_text())["images"] for f in i["faces"]])
    assert results["pth"].shape == (8, 68, 2)
    for name in ("onnx", "pt"):
        # the JSON rounds to 0.01 px; the exported models agree far better than that
        assert (results[name] - results["pth"]).abs().max() <= 0.01 + 1e-6, name


def test_evaluate_gives_the_same_nme(exported, tiny_run, dataset, tmp_path):
    onnx_path, ts_path = exported
    nme = {}
    for name, model in (("pth", tiny_run / "model.pth"), ("onnx", onnx_path), ("pt", ts_path)):
        out = tmp_path / f"{name}.json"
        result = invoke("evaluate", "--model", model, "--data-dir", dataset, "--boxes", "gt", "--json", out)
        assert result.exit_code == 0, result.output
        nme[name] = json.loads(out.read_text())["nme"]
    assert round(nme["onnx"], 4) == round(nme["pth"], 4) == round(nme["pt"], 4)


def test_parity_rows_cover_batches_and_inputs(tiny_run, tmp_path):
    (result,) = export_model(tiny_run / "model.pth", "onnx", tmp_path / "m.onnx")
    assert {(r["input"], r["batch"]) for r in result.parity} == {("random", 1), ("random", 8), ("image crops", 1), ("image crops", 8)}
    assert max(r["max"] for r in result.parity) <= 1e-3


def test_failed_check_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    from fkd_cli import export

    monkeypatch.setattr(export, "TOLERANCE_PX", -1.0)  # any difference at all fails
    with pytest.raises(FkdError, match="was not written"):
        export_model(tiny_run / "model.pth", "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".m.onnx*"))


def test_bad_inputs(tiny_run, tmp_path, dataset, exported):
    onnx_path, _ = exported
    not_ours = tmp_path / "x.pth"
    torch.save({"a": 1}, not_ours)
    assert "not an fkd checkpoint" in one_line_error(invoke("export", "--model", not_ours))
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:200])
    assert "t.onnx" in one_line_error(invoke("predict", dataset / "test", "--model", truncated, "--no-draw"))
    assert "t.onnx" in one_line_error(invoke("evaluate", "--model", truncated, "--data-dir", dataset))
    text = one_line_error(invoke("export", "--model", tiny_run / "model.pth", "--format", "tflite"))
    assert "tflite" in text
    text = one_line_error(invoke("export", "--model", tiny_run / "model.pth", "--out", tmp_path / "missing" / "m.onnx"))
    assert "does not exist" in text
    plain = tmp_path / "plain.onnx"
    m = onnx.load(str(onnx_path))
    del m.metadata_props[:]
    onnx.save(m, str(plain))
    assert "not one exported by `fkd export`" in one_line_error(invoke("predict", dataset / "test", "--model", plain, "--no-draw"))


def test_missing_onnx_dependency_names_the_package(tiny_run, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    text = one_line_error(invoke("export", "--model", tiny_run / "model.pth", "--out", tmp_path / "m.onnx"))
    assert "onnxruntime" in text and "pip install" in text
