"""Metrics on hand-computed cases, and config validation."""

import math

import pytest
import torch

from fkd_cli.config import find_config_file, parse_overrides, resolve_config
from fkd_cli.errors import FkdError
from fkd_cli.metrics import auc, failure_rate, per_image_nme, seed_mse, summarize
from fkd_cli.config import Config
from fkd_cli.optim import l1_nme_loss, make_loss


def _face(eye_distance: float) -> torch.Tensor:
    gt = torch.zeros(1, 68, 2)
    gt[0, 45, 0] = eye_distance  # points 36 and 45 are eye_distance apart
    return gt


def test_nme_hand_computed():
    gt = _face(10.0)
    pred = gt.clone()
    pred[0, :, 0] += 1.0  # every point 1 px off, eyes 10 px apart: 10%
    assert per_image_nme(pred, gt, (36, 45)).item() == pytest.approx(0.10)
    pred = gt.clone()
    pred[0, :34, 1] += 2.0  # half the points 2 px off: mean 1 px: 10%
    assert per_image_nme(pred, gt, (36, 45)).item() == pytest.approx(0.10)


def test_l1_nme_loss_weighs_each_face_by_its_eye_distance():
    """The same error costs twice as much on a face whose eyes are half as far apart, as in NME."""
    target = torch.stack([_face(0.5).reshape(-1), _face(0.25).reshape(-1), _face(0.01).reshape(-1)])
    pred = target + 0.1  # every coordinate 0.1 off: L1 0.1 on each face
    assert l1_nme_loss(pred, target, [36, 45]).tolist() == pytest.approx([0.2, 0.4, 1.0])  # 0.01 kept above 0.1
    loss = make_loss(Config(loss="l1_nme"), [36, 45])
    assert loss(pred[:2], target[:2]).item() == pytest.approx(0.3)  # the mean over faces


def test_hard_focus_leans_the_gradient_toward_the_worst_faces():
    """With hard_focus a face with three times the batch's other error gets more of the gradient than
    its share under the plain mean, the loss keeps its size where every face errs alike, and 0 is L1."""
    target = torch.zeros(4, 136)
    pred = torch.full((4, 136), 0.1)
    pred[3] = 0.3  # one hard face
    plain, focused = make_loss(Config(loss="l1"), None), make_loss(Config(loss="l1", hard_focus=1.0), None)
    assert plain(pred, target).item() == pytest.approx(torch.nn.functional.l1_loss(pred, target).item())
    same = torch.full((4, 136), 0.1)
    assert focused(same, target).item() == pytest.approx(plain(same, target).item())
    assert focused(target, target).item() == 0  # no error anywhere: 0, not 0/0

    def hard_share(loss) -> float:
        p = pred.clone().requires_grad_()
        loss(p, target).backward()
        per_face = p.grad.abs().sum(dim=1)
        return (per_face[3] / per_face.sum()).item()

    assert hard_share(plain) == pytest.approx(0.25)  # L1's gradient is the same size for every face
    assert hard_share(focused) == pytest.approx(0.5)  # weights 0.1, 0.1, 0.1, 0.3 over their mean
    with pytest.raises(FkdError, match="hard_focus"):
        resolve_config(None, parse_overrides(["hard_focus=-1"]))


def test_failure_rate_and_auc_hand_computed():
    nme = torch.tensor([0.0, 0.02, 0.09, 0.2])
    assert failure_rate(nme, 0.08) == 0.5
    assert failure_rate(nme, 0.10) == 0.25
    # CED on [0, 0.1]: 1/4 from 0; 2/4 from 0.02; 3/4 from 0.09 -> area = .25*.02 + .5*.07 + .75*.01
    expected = (0.25 * 0.02 + 0.5 * 0.07 + 0.75 * 0.01) / 0.1
    assert auc(nme, 0.10, steps=10000) == pytest.approx(expected, abs=2e-3)
    assert auc(torch.zeros(5)) == pytest.approx(1.0)


def test_seed_mse_uses_the_original_frame_units():
    gt = torch.zeros(1, 68, 2)
    pred = gt + 50.0 * 200 / 250  # 50 px in a 250-px-short-side frame, image short side 200
    sizes = torch.tensor([[200.0, 300.0]])
    assert seed_mse(pred, gt, sizes) == pytest.approx(1.0)


def test_seed_mse_in_the_original_codes_squashed_frame():
    """The original's own code resized the whole image to 224 x 224: x and y have their own units."""
    gt = torch.zeros(1, 68, 2)
    pred = gt.clone()
    pred[..., 0] = 50.0 * 448 / 224  # 50 px of the 224 frame along x, image 448 wide
    sizes = torch.tensor([[112.0, 448.0]])  # (height, width)
    assert seed_mse(pred, gt, sizes, squash=True) == pytest.approx(0.5)  # x: 1.0 squared, y: 0
    pred[..., 1] = 50.0 * 112 / 224
    assert seed_mse(pred, gt, sizes, squash=True) == pytest.approx(1.0)


def test_summary_has_regions_and_all_keys():
    gt = _face(10.0)
    out = summarize(gt + 0.5, gt, torch.tensor([[100.0, 100.0]]), (36, 45))
    assert {"nme", "nme_median", "fr_8", "fr_10", "auc_10", "mse_seed", "regions"} <= set(out)
    assert set(out["regions"]) == {"jaw", "brows", "nose", "eyes", "mouth"}


def test_config_precedence_defaults_file_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nlr: 0.01\n")
    cfg = resolve_config(path, ["lr=1e-4", "flip=false"])
    assert cfg.epochs == 7 and cfg.lr == 1e-4 and cfg.flip is False and cfg.batch_size == 32
    assert cfg.name == "c"


def test_unknown_key_suggests_the_closest():
    with pytest.raises(FkdError, match="unknown config key 'learning_rat'"):
        resolve_config(None, {"learning_rat": 1})
    with pytest.raises(FkdError, match="did you mean 'epochs'"):
        resolve_config(None, ["epoch=3"])


def test_input_norm_is_refused_where_the_model_has_none():
    assert resolve_config(None, ["input_norm=true"]).input_norm is True
    with pytest.raises(FkdError, match="config key 'input_norm'.*set input_norm=false"):
        resolve_config(None, ["input_norm=true", "model=seed-final"])


def test_wrong_type_names_key_and_type(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: many\n")
    with pytest.raises(FkdError, match=r"key 'epochs' must be int, got 'many'"):
        resolve_config(path)
    with pytest.raises(FkdError, match="key 'flip' must be bool"):
        resolve_config(None, ["flip=3"])
    with pytest.raises(FkdError, match="'loss' must be one of"):
        resolve_config(None, ["loss=huber"])


def test_bad_yaml_and_bundled_names(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("epochs: [1, 2\n")
    with pytest.raises(FkdError, match="not valid YAML"):
        resolve_config(path)
    assert find_config_file("final.yaml").name == "final.yaml"
    assert find_config_file("first").name == "first.yaml"
    with pytest.raises(FkdError, match="bundled:"):
        find_config_file("nope.yaml")


def test_yaml_cannot_construct_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(FkdError, match="not valid YAML"):
        resolve_config(path)


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["lr=1e-3", "mean=[0.1, 0.2, 0.3]", "name=x"]) == {"lr": 1e-3, "mean": [0.1, 0.2, 0.3], "name": "x"}
    with pytest.raises(FkdError, match="expected key=value"):
        parse_overrides(["epochs"])


@pytest.mark.parametrize("name", ["first.yaml", "final.yaml", "fkd-best.yaml", "fkd-fast.yaml"])
def test_bundled_configs_resolve(name):
    cfg = resolve_config(name)
    assert cfg.name == name.removesuffix(".yaml")


def test_fast_config_is_the_recipe_with_fewer_epochs():
    """fkd-fast.yaml is fkd-best.yaml shortened, nothing else: a change to the recipe reaches both."""
    from fkd_cli.config import config_to_dict

    best, fast = (config_to_dict(resolve_config(name)) for name in ("fkd-best", "fkd-fast"))
    assert {k for k in best if best[k] != fast[k]} == {"name", "epochs"}
    assert fast["epochs"] < best["epochs"]


def test_laplace_nll_weighs_each_coordinate_by_its_learned_scale():
    """The Laplace loss's gradient on a coordinate is 1/b: a coordinate with a large scale pulls less;
    its scales are clamped so that one easy point cannot dominate; a head without a hidden layer is refused."""
    from fkd_cli.laplace import MIN_LOG_SCALE, ScaledTrainee, laplace_nll
    from fkd_cli.models import build_model

    target = torch.zeros(1, 2)
    mu = torch.tensor([[0.1, 0.1]], requires_grad=True)
    log_b = torch.log(torch.tensor([[0.01, 0.1]]))
    laplace_nll(torch.cat([mu, log_b], dim=1), target).sum().backward()
    assert mu.grad[0, 0].item() == pytest.approx(10 * mu.grad[0, 1].item(), rel=1e-5)
    tiny = torch.full((1, 1), -50.0)
    value = laplace_nll(torch.cat([torch.ones(1, 1), tiny], dim=1), torch.zeros(1, 1))
    assert value.item() == pytest.approx(math.exp(-MIN_LOG_SCALE) + MIN_LOG_SCALE, rel=1e-5)
    with pytest.raises(FkdError, match="laplace"):
        laplace_nll(torch.zeros(1, 3), torch.zeros(1, 2))
    net = build_model("fkdnet", 68, in_channels=3, input_size=32, width=8, hidden=16)
    assert ScaledTrainee(net)(torch.zeros(2, 3, 32, 32)).shape == (2, 272)
    with pytest.raises(FkdError, match="head_hidden"):
        ScaledTrainee(build_model("fkdnet", 68, in_channels=3, input_size=32, width=8, hidden=0))
    # and the config says so before any data is read, for a head without a hidden layer or no head at all
    for overrides, advice in ((["loss=laplace", "head_hidden=0"], "set head_hidden > 0"),
                              (["loss=laplace", "model=fkdnet-hm"], "reads its points from heatmaps"),
                              (["loss=laplace", "model=fkdnet-integral"], "reads its points from heatmaps")):
        with pytest.raises(FkdError, match=f"laplace needs a regression head.*{advice}"):
            resolve_config("fkd-best", parse_overrides(overrides))
    assert resolve_config("final.yaml", parse_overrides(["loss=laplace"])).loss == "laplace"  # its 1024-unit layer
