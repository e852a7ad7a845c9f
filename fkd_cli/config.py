"""Run configuration: typed defaults < YAML file < `--set key=value`, resolved in one place."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import FkdError


@dataclass
class Config:
    # --- run ---
    name: str = "custom"  # run name: the default run folder is runs/<name>
    seed: int = 0  # seeds data order, augmentation and weights: a CPU run is repeatable
    # --- data ---
    val_fraction: float = 0.1  # share of training/ held out for validation (by image, seeded)
    validation: str = "split"  # split: val_fraction of training/; test: test/, training on all of training/ (the original's way; test/ is then not held out)
    keypoints: int | None = None  # keypoint count; None = read from the CSV
    flip_permutation: list[int] | None = None  # left/right index swap; None = iBUG-68 when K == 68
    norm_points: list[int] | None = None  # the two points whose distance normalises NME; None = [36, 45] for 68
    regions: dict[str, list[int]] | None = None  # named keypoint groups for the API and JSON; None = iBUG-68's for 68
    fraction: float = 1.0  # share of training/ to use (seeded; smaller shares are nested), for smoke runs and learning curves
    # --- framing: how a face is cut out before the network sees it (stored in the checkpoint) ---
    framing: str = "face"  # face: square crop around a face box; frame: shorter side to frame_resize, then a square crop (the Udacity template); squash: the whole image resized to input_size square, aspect not kept (the original project's own code)
    input_size: int = 96  # network input side in pixels
    channels: int = 3  # 3 = RGB, 1 = grayscale
    face_margin: float = 1.25  # face framing: crop side = margin x longer side of the landmark box
    frame_resize: int = 250  # frame framing: shorter side rescaled to this, then a centre/random crop of input_size
    target_offset: float | None = None  # targets = (crop pixel - offset) / scale; None = input_size / 2
    target_scale: float | None = None  # None = input_size / 2, so targets span [-1, 1]
    mean: list[float] = field(default_factory=lambda: [0.5])  # per-channel normalisation (one value = all)
    std: list[float] = field(default_factory=lambda: [0.25])
    detector: str = "mtcnn"  # detector whose boxes the model is calibrated against ("none" to skip)
    refine_steps: int = 1  # re-crops from the predicted landmarks before the final prediction
    flip_tta: bool = False  # average with the prediction on the mirrored crop
    recrop_tta: bool = False  # face framing: average with a second pass on the crop around the prediction (the accurate mode, fkd predict --recrop-tta: twice the network time a face)
    bias_correction: bool = True  # measure the network's mean error per point on the validation split and store it as a correction (README, Accuracy); never with validation: test
    doubt_head: bool = False  # after training, fit a doubt head (each point's expected error, the scores' signal without flip TTA) on the training faces (README, Confidence); only with held-out faces (validation: split, val_fraction > 0), like bias_correction
    smooth_min_cutoff: float = 0.5  # video: One Euro filter cut-off for a still face, Hz (lower: smoother)
    smooth_beta: float = 40.0  # video: extra cut-off per face size a second of movement (higher: less lag)
    # --- augmentation (training only) ---
    rotation: float = 15.0  # max rotation, degrees
    scale_jitter: float = 0.1  # crop side multiplied by up to 1 +/- this
    shift_jitter: float = 0.05  # crop centre moved by up to this share of the crop side
    detector_box_prob: float = 0.5  # face framing: share of training crops cut from the detector's calibrated box
    whole_image_prob: float = 0.0  # face framing: share of training crops that are the whole image (no face found)
    flip: bool = True  # random horizontal flip with left/right index swap
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0 = off
    grayscale_prob: float = 0.0  # chance of turning a training crop grey
    degrade_prob: float = 0.0  # chance of degrading a training crop's image quality: JPEG compression (quality 10-50) or a blur, like the blocky, low-resolution frames among the worst faces (OpenCV's JPEG codec, torchvision's GaussianBlur)
    erasing_prob: float = 0.0  # chance of covering a rectangle of a training crop (2-33% of it) with noise, like an occluding hand (torchvision's RandomErasing)
    # --- model ---
    model: str = "fkdnet"  # architecture: fkdnet, fkdnet-sep and fkdnet-hybrid (leaner: depthwise-separable convs), fkdnet-hm and fkdnet-integral (heatmaps, soft-argmax), seed-first, seed-first-bn, seed-final, seed-final-bn
    width: int = 32  # base channel count for our own architectures
    head_hidden: int = 256  # fkdnet: width of the hidden layer of the regression head (0 = linear head)
    input_norm: bool = False  # fkdnet family: standardise each crop by its own mean and spread inside the network (exposure-invariant input; README, Ablation)
    dropout: float = 0.0  # dropout before the regression head
    # --- optimisation ---
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adamw"  # adam | adamw | sgd
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # constant | cosine | onecycle
    loss: str = "l1"  # mse | l1 | smooth_l1 | wing | l1_nme (L1 divided by each face's eye distance, as NME is) | laplace (L1 over a scale the network learns per coordinate while training: laplace.py)
    hard_focus: float = 0.0  # weight each face's loss in a batch by (its loss / the batch's mean) ** hard_focus, the weights averaging 1: the gradient leans toward the faces the network gets most wrong (0 = the plain mean)
    teachers: list[str] = field(default_factory=list)  # knowledge distillation: checkpoints whose mean prediction is learnt as well as the labels ([] = off)
    distill_weight: float = 0.5  # with teachers: the share of the loss on the teachers' prediction (the rest on the labels)
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema_decay: float = 0.0  # validate and save a moving average of the weights with this decay a step (e.g. 0.999; 0 = off)
    # --- system ---
    num_workers: int = 0  # DataLoader worker processes
    threads: int = 0  # torch CPU threads; 0 = library default
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # channels_last memory format on CUDA (ignored on CPU)


CHOICES = {
    "validation": ("split", "test"),
    "framing": ("face", "frame", "squash"),
    "optimizer": ("adam", "adamw", "sgd"),
    "schedule": ("constant", "cosine", "onecycle"),
    "loss": ("mse", "l1", "smooth_l1", "wing", "l1_nme", "laplace"),
    "detector": ("mtcnn", "haar", "none"),
    "channels": (1, 3),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def describe_keys() -> list[tuple[str, Any, str]]:
    """(key, default, meaning) for every config key, the meaning being the comment beside it in `Config`."""
    import inspect

    comments = {}
    for line in inspect.getsource(Config).splitlines():
        match = re.match(r"\s+(\w+): [^=]+= .*?  # (.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    defaults = Config()
    return [(name, getattr(defaults, name), comments.get(name, "")) for name in FIELDS]


def bundled_config_dir() -> Path:
    return Path(str(resources.files("fkd_cli") / "configs"))


def bundled_config_names() -> list[str]:
    return sorted(p.name for p in bundled_config_dir().glob("*.yaml"))


def find_config_file(name: str | Path) -> Path:
    """A path that exists wins; otherwise a bundled config of that name (with or without `.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (path.name, f"{path.name}.yaml"):
        bundled = bundled_config_dir() / candidate
        if bundled.is_file():
            return bundled
    raise FkdError(
        f"config {name}: no such file, and no bundled config of that name "
        f"(bundled: {', '.join(bundled_config_names())})"
    )


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check `value` against the field's annotation; ints are accepted where floats are expected."""
    hint = typing.get_type_hints(Config)[key]
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is bool and isinstance(value, bool):
            return value
        if base is str and isinstance(value, str):
            return value
        if base is dict and isinstance(value, dict):
            ok = all(isinstance(k, str) and isinstance(v, list) and v and all(isinstance(i, int) and not isinstance(i, bool) for i in v)
                     for k, v in value.items())
            if ok:
                return {k: list(v) for k, v in value.items()}
        if base is list and isinstance(value, list):
            (item_type,) = typing.get_args(option)
            ok = all(
                isinstance(v, item_type) or (item_type is float and isinstance(v, int)) for v in value
            )
            if ok and not any(isinstance(v, bool) for v in value):
                return [item_type(v) for v in value]
    expected = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    expected = str(hint).replace("NoneType", "null") if "[" in str(hint) else expected
    raise FkdError(f"{where}: key '{key}' must be {expected}, got {value!r}")


# Every numeric key's allowed range: (low, high, low inclusive, high inclusive); None = unbounded.
# Checked in one place, before any data is read; NaN and infinity are refused everywhere.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "val_fraction": (0, 1, True, False),
    "fraction": (0, 1, False, True),
    "keypoints": (1, None, True, True),
    "input_size": (16, 1024, True, True),
    "face_margin": (0, 10, False, True),
    "frame_resize": (1, None, True, True),
    "target_offset": (None, None, True, True),
    "target_scale": (0, None, False, True),
    "refine_steps": (0, 10, True, True),
    "smooth_min_cutoff": (0, None, False, True),
    "smooth_beta": (0, None, True, True),
    "rotation": (0, 180, True, True),
    "scale_jitter": (0, 1, True, False),
    "shift_jitter": (0, 1, True, True),
    "detector_box_prob": (0, 1, True, True),
    "whole_image_prob": (0, 1, True, True),
    "color_jitter": (0, 1, True, True),
    "grayscale_prob": (0, 1, True, True),
    "degrade_prob": (0, 1, True, True),
    "erasing_prob": (0, 1, True, True),
    "width": (1, 1024, True, True),
    "head_hidden": (0, None, True, True),
    "dropout": (0, 1, True, False),
    "epochs": (1, None, True, True),
    "batch_size": (1, None, True, True),
    "lr": (0, None, False, True),
    "weight_decay": (0, None, True, True),
    "grad_clip": (0, None, True, True),
    "ema_decay": (0, 1, True, False),
    "distill_weight": (0, 1, True, True),
    "hard_focus": (0, 4, True, True),
    "num_workers": (0, 256, True, True),
    "threads": (0, 1024, True, True),
}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_range(key: str, value: float) -> None:
    low, high, low_incl, high_incl = RANGES[key]
    bad = not math.isfinite(value)
    bad |= low is not None and (value < low or (value == low and not low_incl))
    bad |= high is not None and (value > high or (value == high and not high_incl))
    if bad:
        lo = "" if low is None else f"{'>=' if low_incl else '>'} {low:g}"
        hi = "" if high is None else f"{'<=' if high_incl else '<'} {high:g}"
        raise FkdError(f"config key '{key}' must be {' and '.join(x for x in (lo, hi) if x) or 'finite'}, got {value!r}")


def _validate(cfg: Config) -> None:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise FkdError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}, got {getattr(cfg, key)!r}")
    for key in RANGES:
        value = getattr(cfg, key)
        if value is not None:
            _check_range(key, value)
    if cfg.whole_image_prob + cfg.detector_box_prob > 1:
        raise FkdError("config keys 'whole_image_prob' + 'detector_box_prob' must add up to at most 1")
    if not RUN_NAME.fullmatch(cfg.name) or cfg.name in (".", ".."):
        # the name becomes runs/<name>: a path in it would write outside the runs folder
        raise FkdError(f"config key 'name' must be a plain folder name (letters, digits, . _ -), got {cfg.name!r}")
    if len(cfg.mean) not in (1, cfg.channels) or len(cfg.std) != len(cfg.mean):
        raise FkdError("config keys 'mean' and 'std' need one value, or one per channel, each")
    if not all(math.isfinite(v) for v in cfg.mean) or not all(math.isfinite(v) and v > 0 for v in cfg.std):
        raise FkdError("config keys 'mean' and 'std' must be finite, and 'std' > 0")
    if cfg.norm_points is not None and (len(cfg.norm_points) != 2 or len(set(cfg.norm_points)) != 2
                                        or min(cfg.norm_points) < 0):
        raise FkdError(f"config key 'norm_points' must name two different keypoint indices, got {cfg.norm_points}")
    if cfg.keypoints is not None:
        check_keypoint_indices(cfg, cfg.keypoints)
    from .models import FKDNET_FAMILY, HEATMAP_MODELS, MODELS  # late import: models imports torch, config must stay light

    if cfg.model not in MODELS:
        raise FkdError(f"config key 'model': unknown model '{cfg.model}'; choose one of {', '.join(MODELS)}")
    if cfg.input_norm and cfg.model not in FKDNET_FAMILY:
        raise FkdError(f"config key 'input_norm': only the models {', '.join(FKDNET_FAMILY)} have it; set input_norm=false")
    # laplace's scale layer reads the regression head's hidden layer (laplace.py): refused here, before
    # minutes of decoding and detection, not when the model is built
    if cfg.loss == "laplace" and cfg.model in HEATMAP_MODELS:
        raise FkdError(f"config key 'loss': laplace needs a regression head with a hidden layer, and model "
                       f"'{cfg.model}' reads its points from heatmaps; choose another loss (l1) or model")
    if cfg.loss == "laplace" and cfg.model in FKDNET_FAMILY and cfg.head_hidden == 0:
        raise FkdError(f"config key 'loss': laplace needs a regression head with a hidden layer, which model "
                       f"'{cfg.model}' with head_hidden=0 has not; set head_hidden > 0 or another loss")


def check_keypoint_indices(cfg: Config, num_keypoints: int) -> None:
    """Keys that name keypoint indices must fit the data's K (known once the CSV header is read)."""
    if cfg.norm_points is not None:
        a, b = cfg.norm_points
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints) or a == b:
            raise FkdError(f"config key 'norm_points' must be two different indices in 0..{num_keypoints - 1}, "
                           f"got {cfg.norm_points}")
    for name, indices in (cfg.regions or {}).items():
        if not all(0 <= i < num_keypoints for i in indices):
            raise FkdError(f"config key 'regions': '{name}' names an index outside 0..{num_keypoints - 1}")
    if cfg.flip_permutation is not None and len(cfg.flip_permutation) != num_keypoints:
        raise FkdError(f"config key 'flip_permutation' has {len(cfg.flip_permutation)} entries for {num_keypoints} keypoints")


def _apply(cfg: Config, updates: dict[str, Any], where: str) -> None:
    for key, value in updates.items():
        if key not in FIELDS:
            raise FkdError(f"{where}: unknown config key '{key}'{_suggest(key)}")
        setattr(cfg, key, _coerce(key, value, where))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings; values are read as YAML scalars/lists (safe_load), so `lr=1e-3` is a float."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FkdError(f"--set {pair!r}: expected key=value, e.g. --set epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        # YAML reads 1e-3 as a string (no dot); accept it as the number a user means
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else value
            except ValueError:
                pass
        out[key.strip()] = value
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FkdError(f"config {path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FkdError(f"config {path}: not valid YAML{where} ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FkdError(f"config {path}: expected a mapping of key: value at the top level")
    return data


def resolve_config(
    config: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> Config:
    """The single place where precedence is settled: defaults < YAML file < overrides."""
    cfg = Config()
    if config is not None:
        path = find_config_file(config)
        data = load_yaml(path)
        data.setdefault("name", path.stem)
        _apply(cfg, data, f"config {path}")
    if overrides:
        updates = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        _apply(cfg, updates, "--set")
    _validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config saved in a checkpoint; keys unknown to this version are ignored."""
    cfg = Config()
    _apply(cfg, {k: v for k, v in data.items() if k in FIELDS}, "checkpoint config")
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
