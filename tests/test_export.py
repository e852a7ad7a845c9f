"""`fkd export`: ONNX and TorchScript files that agree with PyTorch and run in predict/evaluate."""

import json

import numpy as np
import pytest
import torch

from fkd_cli.export import PREPROCESS_KEY, export_model
from fkd_cli.errors import FkdError

from .helpers import TINY, invoke, one_line_error, sets

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
                        "--no-draw", "--batch-size", "3", "--trust-code")
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
        result = invoke("evaluate", "--model", model, "--data-dir", dataset, "--boxes", "gt", "--json", out, "--trust-code")
        assert result.exit_code == 0, result.output
        nme[name] = json.loads(out.read_text())["nme"]
    assert round(nme["onnx"], 4) == round(nme["pth"], 4) == round(nme["pt"], 4)


def test_parity_rows_cover_batches_and_inputs(tiny_run, tmp_path):
    (result,) = export_model(tiny_run / "model.pth", "onnx", tmp_path / "m.onnx")
    assert {(r["input"], r["batch"]) for r in result.parity} == {("random", 1), ("random", 8), ("image crops", 1), ("image crops", 8)}
    assert max(r["max"] for r in result.parity) <= 1e-3


@pytest.mark.parametrize("override", ["model=fkdnet-sep", "model=fkdnet-hybrid", "input_norm=true", "model=fkdnet-integral"])
def test_leaner_networks_train_export_and_agree(dataset, tmp_path, override):
    """The leaner networks of the README's speed section (depthwise-separable convs), the network
    that standardises its own input and the integral heatmap network go the whole way: train, fold
    their BatchNorms, export with the parity check passed, and predict the same keypoints on ONNX
    Runtime as on PyTorch."""
    from fkd_cli import load_model

    out = tmp_path / "sep"
    args = ["--config", "fkd-best", "--data-dir", dataset, "--out", out, "--quiet", *sets(TINY), "--set", override]
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output
    saved = torch.load(out / "model.pth", weights_only=True)
    if override.startswith("model="):
        assert saved["arch"] == override.removeprefix("model=")
    else:
        assert saved["arch_kwargs"]["input_norm"] is True
    (exported,) = export_model(out / "model.pth", "onnx", tmp_path / "sep.onnx")
    assert max(r["max"] for r in exported.parity) <= 1e-3
    photo = next((dataset / "test").iterdir())
    on_onnx = load_model(out / "model.pth", detector="none").predict(photo).keypoints
    on_torch = load_model(out / "model.pth", detector="none", backend="pytorch").predict(photo).keypoints
    assert on_onnx.shape == on_torch.shape and abs(on_onnx - on_torch).max() <= 1e-3


def test_standardised_input_ignores_exposure():
    """input_norm: a crop made darker and flatter (or brighter) gives the same output; without it, not."""
    from fkd_cli.models import build_model

    torch.manual_seed(0)
    crops = torch.randn(2, 3, 96, 96)
    changed = 0.4 * crops - 0.7  # what the network sees of a dark, low-contrast frame
    for input_norm, same in ((True, True), (False, False)):
        net = build_model("fkdnet", 68, in_channels=3, input_size=96, hidden=16, input_norm=input_norm).eval()
        with torch.no_grad():
            assert torch.allclose(net(crops), net(changed), atol=1e-4) is same


def test_soft_argmax_reads_a_peak_at_its_cell_centre():
    from fkd_cli.models import SoftArgmax2d

    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 3, 1] = 50.0  # row 3, column 1: centre at x = -0.25, y = 0.75 in crop units
    xy = SoftArgmax2d(4, 4)(maps).reshape(2, 2)
    assert torch.allclose(xy[0], torch.tensor([-0.25, 0.75]), atol=1e-4)
    assert torch.allclose(xy[1], torch.zeros(2), atol=1e-6)  # a flat map: the expectation is the centre


def test_integral_network_is_fkdnet_backbone_with_heatmaps():
    """fkdnet-integral's encoder is FkdNet's own stages (an FkdNet's weights load into it), and its
    coordinates come from 1/4-resolution heatmaps, so they stay inside the crop."""
    from fkd_cli.models import build_model

    torch.manual_seed(0)
    regressor = build_model("fkdnet", 68, in_channels=3, input_size=96, width=8, hidden=16)
    integral = build_model("fkdnet-integral", 68, in_channels=3, input_size=96, width=8).eval()
    stages = [*integral.to_quarter, *integral.to_eighth, *integral.to_sixteenth]
    assert [type(m) for m in stages] == [type(m) for m in regressor.features]
    torch.nn.Sequential(*stages).load_state_dict(regressor.features.state_dict())
    assert integral.soft_argmax.xs.numel() == 24
    with torch.no_grad():
        out = integral(torch.randn(3, 3, 96, 96))
    assert out.shape == (3, 136) and out.abs().max() < 1


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


def _hostile_torchscript(path, victim, preprocess: dict):
    """A TorchScript archive with fkd's metadata whose `__setstate__` overwrites bytes of `victim`
    during `torch.jit.load` (a memory-mapped write through `torch.from_file`)."""
    from typing import Tuple

    class Hostile(torch.nn.Module):
        def __init__(self, target: str):
            super().__init__()
            self.target = target

        def forward(self, x):
            return x

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool]:
            return (self.target, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool]) -> None:
            self.target = state[0]
            written = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8).fill_(88)
            self.training = bool(written.sum() > 0) and state[1]

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(Hostile(str(victim)))
        torch.jit.save(scripted, str(path), _extra_files={f"{PREPROCESS_KEY}.json": json.dumps(preprocess)})
    return path


def test_hostile_torchscript_never_runs_without_trust_code(tiny_run, dataset, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("safe text")
    preprocess = torch.load(tiny_run / "model.pth", weights_only=True)["preprocess"]
    hostile = _hostile_torchscript(tmp_path / "hostile.pt", victim, preprocess)
    for command in (["predict", dataset / "test", "--no-draw"], ["evaluate", "--data-dir", dataset]):
        text = one_line_error(invoke(*command, "--model", hostile))
        assert "--trust-code" in text and "runs code" in text
        assert victim.read_text() == "safe text"
    from fkd_cli import load_model

    with pytest.raises(FkdError, match="trust_code=True"):
        load_model(hostile)
    assert victim.read_text() == "safe text"
    # the opt-in loads it, and so runs its code: the refusal above is what protected the file
    load_model(hostile, trust_code=True)
    assert victim.read_text() == "XXXX text"


def test_foreign_torchscript_is_refused_before_loading(tmp_path, dataset):
    plain = tmp_path / "plain.pt"
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    text = one_line_error(invoke("predict", dataset / "test", "--no-draw", "--model", plain, "--trust-code"))
    assert "not one exported by `fkd export`" in text


# ---- the ONNX Runtime twin behind the default path -----------------------------------------------


def test_the_bundled_model_runs_on_its_shipped_twin(astronaut):
    from fkd_cli import load_model
    from fkd_cli.backends import bundled_model_path, load_onnx
    from fkd_cli.digest import sha256_of
    from fkd_cli.twin import load_twin

    fast = load_model()
    assert fast.backend.name == "onnxruntime" and fast.source == str(bundled_model_path())
    # the shipped twin records this very checkpoint (a stale one would fail here)
    _, pp, meta = load_onnx(bundled_model_path().with_suffix(".onnx"))
    assert meta["source_sha256"] == sha256_of(bundled_model_path())
    assert load_twin(bundled_model_path())[2]["source_sha256"] == meta["source_sha256"]
    reference = load_model(backend="pytorch")
    assert reference.backend.name == "pytorch" and pp.to_dict() == reference.pp.to_dict()
    a, b = fast.predict(str(astronaut)), reference.predict(str(astronaut))
    assert np.abs(a.keypoints - b.keypoints).max() < 1e-3 and np.abs(a.landmark_scores - b.landmark_scores).max() < 1e-4


def test_a_trained_model_gets_a_cached_twin_once(tiny_run, tmp_path, monkeypatch, dataset):
    import shutil

    from fkd_cli import load_model

    monkeypatch.setenv("FKD_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.pth"
    shutil.copy(tiny_run / "model.pth", model)
    first = load_model(model, detector="none")
    assert first.backend.name == "onnxruntime"
    (twin,) = (tmp_path / "cache" / "onnx").iterdir()
    made = twin.stat().st_mtime_ns
    image = sorted((dataset / "test").iterdir())[0]
    again = load_model(model, detector="none")
    assert twin.stat().st_mtime_ns == made  # reused, not made again
    torch_run = load_model(model, detector="none", backend="pytorch").predict(image)
    assert np.abs(again.predict(image).keypoints - torch_run.keypoints).max() < 1e-3
    # a changed checkpoint never runs on the old twin
    data = torch.load(model, weights_only=True)
    data["state_dict"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    torch.save(data, model)
    changed = load_model(model, detector="none")
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2
    assert np.abs(changed.predict(image).keypoints - load_model(model, detector="none", backend="pytorch").predict(image).keypoints).max() < 1e-3
