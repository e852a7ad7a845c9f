"""The `fkd` command: thin commands that check their inputs and outputs, call the core, and render.

Heavy imports (torch, the model) happen inside each command, after its paths were checked, so that
a mistyped path is a one-line error at once.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import FkdError

app = typer.Typer(
    help="Facial keypoint detection: download the data, train, evaluate, predict 68 landmarks, calibrate, export.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

FLAG = " "  # metavar for on/off flags: no "<bool>" placeholder in --help
STDOUT = Path("-")  # `--json -` / `--csv -`: write to standard output


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class EvalSplit(str, Enum):
    test = "test"
    val = "val"
    training = "training"


class BoxSource(str, Enum):
    detector = "detector"
    gt = "gt"


class DetectorName(str, Enum):
    mtcnn = "mtcnn"
    haar = "haar"
    none = "none"


class Backend(str, Enum):
    auto = "auto"
    pytorch = "pytorch"
    onnxruntime = "onnxruntime"


BACKEND_HELP = "auto: a .pth runs on ONNX Runtime on the CPU (through its ONNX twin), else PyTorch."


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    all = "all"


TRUST_CODE_HELP = ("Allow a TorchScript .pt model: such files are programs, and loading one runs code from it. "
                   "Only for files you trust; .pth and .onnx never run code.")
RECROP_TTA_HELP = ("The accurate mode: look at each face twice, on its crop and on the crop around that first "
                   "prediction, and average the two (twice the network time a face; README, Accuracy). Default: as "
                   "the model was made (off for the bundled model).")
DETECTOR_HELP = ("The face detector; default: the one the model was calibrated for (mtcnn for the bundled model). "
                 "haar: OpenCV's cascades; none: each image is one face crop.")
QUIET_HELP = "Print only errors (no progress, no tables); outputs are written as usual."
DEFAULT_CONF = 0.0  # see the README (Confidence) for the measurement behind it


def user_errors(fn):
    """Expected failures end in one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .render import err_console

        try:
            return fn(*args, **kwargs)
        except FkdError as exc:
            err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _note(text: str) -> None:
    from .render import err_console

    err_console.print(f"note: {text}", highlight=False, soft_wrap=True)


def _check_outputs(targets) -> None:
    """Every (path, option) is writable, checked before any work; at most one of them is stdout."""
    from .outputs import check_output_file

    to_stdout = [option for path, option in targets if path == STDOUT]
    if len(to_stdout) > 1:
        raise FkdError(f"{' and '.join(to_stdout)}: only one output can go to standard output (-)")
    for path, option in targets:
        if path is not None and path != STDOUT:
            check_output_file(path, option)


def write_outputs(jobs) -> int:
    """Run each (option, path, text or write function) job: text goes to the file, or to stdout for
    `-`. A failure is one line and the others still run. Returns how many failed."""
    from .outputs import write_text
    from .render import err_console

    failed = 0
    for option, path, content in jobs:
        try:
            if path == STDOUT:
                sys.stdout.write(content)
                sys.stdout.flush()
            elif callable(content):
                content()
            else:
                write_text(path, content)
        except (OSError, FkdError) as exc:
            failed += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            err_console.print(f"[red]error:[/] {option} {path}: not written ({reason})", highlight=False, soft_wrap=True)
    return failed


THREADS_HELP = "CPU threads for the networks (PyTorch and ONNX Runtime); 0: one a core. Fewer can help when other work keeps the machine busy."


def _set_threads(threads: int) -> int:
    """`--threads`: the networks' threads, ONNX Runtime's and PyTorch's (0: the defaults)."""
    from .threads import set_threads

    return set_threads(threads)


def _image_workers(threads: int, paths: list[Path], sources: list[int]) -> int:
    """With the default `--threads 0` and several still images: one image a core, each on one runtime
    thread (the networks are too small for two threads to speed one image up by much; README, Speed).
    An explicit `--threads N`, or any video or camera, keeps one file at a time."""
    from .predict import images_in_parallel

    if threads or not images_in_parallel(paths, sources):
        return 1
    from .threads import cores

    return max(1, cores())


def _version(value: bool) -> None:
    if value:
        print(f"fkd {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar=FLAG,
                                 help="Print fkd's version and exit."),
):
    """Facial keypoint detection: download the data, train, evaluate, predict 68 landmarks, calibrate, export."""


@app.command("download-data")
@user_errors
def download_data(
    data_dir: Path = typer.Option(Path("data"), "--data-dir", "--dest", help="Folder to create (what train and evaluate read)."),
    url: Optional[str] = typer.Option(None, "--url", help="Archive URL (http, https or file://); default: the official archive."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected SHA-256 of the archive; a mismatch is an error."),
    source: Optional[Path] = typer.Option(None, "--from", help="A local zip, or an already-extracted folder, instead of downloading."),
    force: bool = typer.Option(False, "--force", metavar=FLAG, help="Download and extract again even if the folder is complete."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Download the Udacity facial keypoints data, verify it, and extract it safely.

    Example: fkd download-data --from train-test-data.zip --data-dir data
    """
    from rich.table import Table

    from .download import DEFAULT_URL, fetch_dataset
    from .render import console, progress

    with progress("download", quiet=quiet) as bar:
        result = fetch_dataset(data_dir, url=url or DEFAULT_URL, sha256=sha256, source=source, force=force,
                               progress=lambda done, total, note="": bar.update(done, total, note))
    if quiet:
        return
    if result.already_complete:
        console.print(f"already complete and verified: {data_dir}; nothing downloaded (use --force to fetch again)",
                      soft_wrap=True, highlight=False)
    table = Table(title=f"{data_dir}")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("CSV rows", justify="right")
    for split, counts in result.manifest["splits"].items():
        table.add_row(split, str(counts["images"]), str(counts["rows"]))
    console.print(table)


@app.command()
@user_errors
def train(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config: a path, or a bundled name (first, final, fkd-best, fkd-fast); not needed with --resume."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Folder in the official layout (see `fkd download-data`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder; default runs/<config name> (never overwritten: runs/<name>2...)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config key: --set epochs=5 (repeatable)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run from its last.pth."),
    device: Device = typer.Option(Device.auto, "--device", help="auto = CUDA, then MPS, then CPU."),
    show_config: bool = typer.Option(False, "--show-config", metavar=FLAG, help="List every config key (default, meaning; with --config its value) and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Train a keypoint model; the run folder gets model.pth, last.pth, config.yaml, metrics.csv and loss.png.

    Example: fkd train --config fkd-best --set epochs=5
    """
    from .config import resolve_config

    if show_config:
        from .config import describe_keys
        from .render import config_table, console

        console.print(config_table(describe_keys(), resolve_config(config, overrides) if config or overrides else None))
        return
    if config is None and resume is None:
        raise FkdError("--config is required (a path, or a bundled name: first, final, fkd-best, fkd-fast), or --resume a run")
    if resume is not None and overrides:
        raise FkdError("--set cannot change a resumed run: it continues with the config saved in its checkpoint")
    # with --resume the run's own saved config is used; the file is only checked here
    cfg = resolve_config(config, overrides)
    from .render import RichTrainReporter, console
    from .trainer import train as run_training

    reporter = RichTrainReporter(show=not quiet and int(os.environ.get("RANK", "0")) == 0)
    try:
        result = run_training(cfg, data_dir, out, resume, device.value, reporter)
    finally:
        reporter.close()
    if reporter.show and result.history:
        best, model = result.best, result.run_dir / "model.pth"
        if best["nme"] >= 0:  # a run without validation ranks its epochs by -epoch
            console.print(f"best val NME {100 * best['nme']:.2f}% at epoch {best['epoch']}: [bold]{model}[/]")
        else:  # no validation split: the last epoch is the model
            console.print(f"no validation: model.pth is epoch {best['epoch']}: [bold]{model}[/]")
    if result.stopped_early:
        raise typer.Exit(130)


@app.command()
@user_errors
def evaluate(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="A .pth checkpoint, .onnx, or TorchScript .pt (with --trust-code); default: the bundled model."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Folder in the official layout."),
    split: EvalSplit = typer.Option(EvalSplit.test, "--split", help="test/, the training run's val split, or all of training/."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON here (- for standard output)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the cumulative error curve (PNG) here."),
    per_image: Optional[Path] = typer.Option(None, "--per-image", help="Write each image's NME, missed flag, detector score, per-region NME and mse_seed as CSV here (- for standard output)."),
    boxes: BoxSource = typer.Option(BoxSource.detector, "--boxes", help="detector: what `fkd predict` does; gt: oracle boxes from the landmarks."),
    detector: Optional[DetectorName] = typer.Option(None, "--detector", help=DETECTOR_HELP),
    flip_tta: Optional[bool] = typer.Option(None, "--flip-tta/--no-flip-tta", metavar=FLAG, help="Average with the mirrored crop (default: as the model was trained)."),
    recrop_tta: Optional[bool] = typer.Option(None, "--recrop-tta/--no-recrop-tta", metavar=FLAG, help=RECROP_TTA_HELP),
    bias_correction: bool = typer.Option(True, "--bias-correction/--no-bias-correction", metavar=FLAG, help="Add the model's stored per-point bias correction (default); off: the network's own predictions."),
    device: Device = typer.Option(Device.auto, "--device"),
    backend: Backend = typer.Option(Backend.auto, "--backend", help=BACKEND_HELP),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP),
    trust_code: bool = typer.Option(False, "--trust-code", metavar=FLAG, help=TRUST_CODE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Measure a model with the field's metrics (NME, FR@8/10%, AUC@10%, per-region NME).

    Example: fkd evaluate --data-dir data --json metrics.json --per-image per-image.csv
    """
    from .inputs import check_model_path

    _check_outputs([(json_out, "--json"), (plot, "--plot"), (per_image, "--per-image")])
    check_model_path(model)
    if not data_dir.is_dir():
        raise FkdError(f"data folder {data_dir}: not found; run `fkd download-data` (or pass --data-dir)")
    from .evaluate import evaluate_model, per_image_csv
    from .render import console, err_console, metrics_table, plot_ced, progress

    threads = _set_threads(threads)

    with progress("evaluate", quiet=quiet) as bar:
        report, result = evaluate_model(
            model, data_dir, split.value, boxes.value, detector.value if detector else None, flip_tta, device.value,
            trust_code, progress=lambda done, total: bar.update(done, total), notes=_note, backend=backend.value,
            threads=threads, bias_correction=bias_correction, recrop_tta=recrop_tta)
    if not quiet:
        (err_console if STDOUT in (json_out, per_image) else console).print(
            metrics_table(report, f"{report['model']} on {data_dir}/{split.value} ({boxes.value} boxes)"))
    jobs = []
    if json_out:
        jobs.append(("--json", json_out, json.dumps(report, indent=2) + "\n"))
    if per_image:
        jobs.append(("--per-image", per_image, per_image_csv(result)))
    if plot:
        jobs.append(("--plot", plot, lambda: plot_ced(result.nme, plot, Path(report["model"]).name)))
    if write_outputs(jobs):
        raise typer.Exit(1)


@app.command()
@user_errors
def predict(
    inputs: Optional[List[str]] = typer.Argument(None, metavar="INPUTS", help="Image and video files, folders or glob patterns."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="A .pth checkpoint, .onnx, or TorchScript .pt (with --trust-code); default: the bundled model."),
    source: List[int] = typer.Option([], "--source", help="Camera N as a live stream (repeatable); Ctrl-C ends it cleanly."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for annotated images and videos; default runs/predict (never overwritten)."),
    detector: Optional[DetectorName] = typer.Option(None, "--detector", help=DETECTOR_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all results as JSON here (- for standard output)."),
    jsonl_out: Optional[Path] = typer.Option(None, "--jsonl", help="Write one JSON line per image and per video frame, as they are done (- for standard output)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write one row per face as CSV here (- for standard output)."),
    conf: float = typer.Option(DEFAULT_CONF, "--conf", min=0.0, max=1.0, help="Drop faces whose detector score is below this."),
    max_faces: Optional[int] = typer.Option(None, "--max-faces", min=1, help="Keep only the N largest faces of each image."),
    min_face: Optional[float] = typer.Option(None, "--min-face", help="Smallest face to look for, in pixels of the photo (default 40; at least 20). The search starts at this size; somewhat smaller faces are often found too. Lower it for crowds of tiny faces (slower)."),
    save_crops: bool = typer.Option(False, "--save-crops", metavar=FLAG, help="Write each face of each image as an aligned crop (into OUT/crops)."),
    crop_size: int = typer.Option(112, "--crop-size", min=32, max=1024, help="Side of aligned crops (112: the face-recognition template; 224: twice it)."),
    no_smooth: bool = typer.Option(False, "--no-smooth", metavar=FLAG, help="Video: no One Euro smoothing of the keypoints."),
    detect_every: int = typer.Option(10, "--detect-every", min=1, help="Video: run the face detector every N frames (and when a face is lost)."),
    no_draw: bool = typer.Option(False, "--no-draw", metavar=FLAG, help="Do not write annotated images and videos."),
    recursive: bool = typer.Option(False, "--recursive", "-r", metavar=FLAG, help="Descend into sub-folders of folder inputs."),
    recrop_tta: Optional[bool] = typer.Option(None, "--recrop-tta/--no-recrop-tta", metavar=FLAG, help=RECROP_TTA_HELP),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Faces per model call."),
    device: Device = typer.Option(Device.auto, "--device"),
    backend: Backend = typer.Option(Backend.auto, "--backend", help=BACKEND_HELP),
    threads: int = typer.Option(0, "--threads", min=0, help=THREADS_HELP),
    trust_code: bool = typer.Option(False, "--trust-code", metavar=FLAG, help=TRUST_CODE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Find faces and put keypoints on them, in images, videos and camera streams; coordinates are in
    the upright original image's pixels.

    Example: fkd predict photos/*.jpg clip.mp4 --jsonl - | jq -c '.faces[].pose'
    """
    from .inputs import check_model_path, collect_inputs
    from .outputs import claim_run_dir, release_if_empty

    if not inputs and not source:
        raise FkdError("give INPUTS (image or video files, folders, globs) or --source N for a camera")
    paths = collect_inputs(inputs, recursive) if inputs else []
    _check_outputs([(json_out, "--json"), (jsonl_out, "--jsonl"), (csv_out, "--csv")])
    check_model_path(model)
    out_dir = None if no_draw and not save_crops else claim_run_dir(out or Path("runs/predict"))
    try:
        from .inference import load_predictor
        from .predict import PredictOptions
        from .video import TrackerOptions

        workers = _image_workers(threads, paths, source)
        threads = _set_threads(1 if workers > 1 else threads)
        predictor = load_predictor(model, detector=detector.value if detector else None, device=device.value,
                                   trust_code=trust_code, backend=backend.value, threads=threads, min_face=min_face)
        predictor = predictor.configured(batch_size=batch_size, conf=conf, max_faces=max_faces, recrop_tta=recrop_tta)
        crops_dir = None
        if save_crops:
            if predictor.num_keypoints != 68:
                raise FkdError("--save-crops needs a 68-point model (the crop template uses eyes, nose tip and mouth corners)")
            crops_dir = out_dir / "crops"
            crops_dir.mkdir()
        smoothing = predictor.info.get("config", {})
        options = PredictOptions(None if no_draw else out_dir, crops_dir, crop_size, TrackerOptions(
            detect_every=detect_every, smooth=not no_smooth,
            min_cutoff=smoothing.get("smooth_min_cutoff", TrackerOptions.min_cutoff),
            beta=smoothing.get("smooth_beta", TrackerOptions.beta)), workers=workers)
    except BaseException:
        if out_dir is not None:
            release_if_empty(out_dir)
        raise
    _report_predictions(predictor, paths, source, options, out_dir, json_out, jsonl_out, csv_out, quiet)


def _open_lines(path: Path | None):
    """The JSON Lines output: written line by line as results come (a stream may never end), so a
    crash or Ctrl-C keeps every line so far."""
    if path is None:
        return None
    return sys.stdout if path == STDOUT else open(path, "w", encoding="utf-8")


def _report_predictions(predictor, paths, sources, options, out_dir, json_out, jsonl_out, csv_out, quiet: bool) -> None:
    """Run predict over the files, then show and write what came out (the exit code says what failed)."""
    from .inputs import is_video
    from .predict import json_line, predict_files
    from .render import NoProgress, progress

    for note in predictor.notes:
        _note(note)
    output_errors: list[str] = []
    lines = _open_lines(jsonl_out)

    def on_line(record: dict) -> None:
        try:
            lines.write(json_line(record))
            lines.flush()
        except OSError as exc:
            output_errors.append(f"--jsonl {jsonl_out}: stopped ({exc.strerror or exc})")

    try:
        has_video = bool(sources) or any(is_video(p) for p in paths)
        with progress("predict", len(paths) or None, quiet=quiet) as bar, \
                (progress("frames", quiet=quiet) if has_video else NoProgress()) as frames:
            report = predict_files(predictor, paths, progress=bar.update, on_output_error=output_errors.append,
                                   options=options, on_line=on_line if lines else None, video_progress=frames.update,
                                   sources=sources)
    finally:
        if lines is not None and lines is not sys.stdout:
            lines.close()
    _finish_predictions(report, len(paths) + len(sources), out_dir, json_out, csv_out, output_errors, quiet,
                        to_stdout=STDOUT in (json_out, jsonl_out, csv_out))


def _finish_predictions(report, total, out_dir, json_out, csv_out, output_errors, quiet: bool, to_stdout: bool) -> None:
    from .predict import csv_text, json_report
    from .render import console, err_console, predict_table

    screen = err_console if to_stdout else console  # stdout is for the data then
    if not quiet:
        screen.print(predict_table(report))
    for message in output_errors:
        err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    jobs = []
    if json_out:
        jobs.append(("--json", json_out, json.dumps(json_report(report), indent=1) + "\n"))
    if csv_out:
        jobs.append(("--csv", csv_out, csv_text(report)))
    failed_outputs = write_outputs(jobs) + len(output_errors)
    failed = [item for item in report["images"] + report.get("videos", []) if item["error"]]
    if out_dir is not None and not output_errors and not quiet:
        screen.print(f"outputs: [bold]{out_dir}[/]")
    if report["interrupted"]:
        done = len(report["images"]) + len(report.get("videos", []))
        err_console.print(f"[red]interrupted[/] after {done} of {total} inputs; their results were written", highlight=False)
        raise typer.Exit(130)
    if failed:
        err_console.print(f"[red]{len(failed)} of {total} inputs failed[/]")
    if failed or failed_outputs:
        raise typer.Exit(1)


@app.command()
@user_errors
def calibrate(
    model: Path = typer.Argument(..., metavar="MODEL", help="A face-framed .pth checkpoint."),
    detector: Optional[DetectorName] = typer.Option(None, "--detector", help="Measure a rule for this detector (on training/)."),
    bias: bool = typer.Option(False, "--bias", metavar=FLAG, help="Measure the per-point bias correction (on the validation split the model was trained without)."),
    doubt: bool = typer.Option(False, "--doubt", metavar=FLAG, help="Fit a doubt head (each point's expected error, for scores without flip TTA) on the training faces; refit the scores on the validation split."),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="Folder in the official layout the model was trained on."),
    out: Path = typer.Option(..., "--out", help="Where to write the recalibrated checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Fit a trained model to another face detector, refit its bias correction, or give it a doubt head,
    without retraining: the calibrations are stored in a copy of the model, the network's weights are
    unchanged. test/ is never used.

    Example: fkd calibrate runs/fkd-best/model.pth --detector haar --out model-haar.pth
    """
    from .inputs import check_model_path

    check_model_path(model)
    _check_outputs([(out, "--out")])
    from .calibrate import recalibrate
    from .render import console, progress

    what = ([f"{detector.value} rule"] if detector else []) + (["bias"] if bias else []) + (["doubt"] if doubt else [])
    with progress(f"{' and '.join(what) or 'calibration'} pass", quiet=quiet) as bar:
        changes = recalibrate(model, data_dir, out, detector.value if detector else None, bias,
                              progress=lambda done, total: bar.update(done, total), doubt=doubt)
    if quiet:
        return
    if "rule" in changes:
        rule = changes["rule"]
        console.print(f"{out}: {rule['detector']} rule from {rule['samples']} training faces: "
                      f"dx={rule['dx']:+.3f} dy={rule['dy']:+.3f} scale={rule['scale']:.3f}", highlight=False)
    if "bias_correction" in changes:
        import numpy as np

        values = np.asarray(changes["bias_correction"])
        console.print(f"{out}: bias correction from the validation split: mean {values[:, 0].mean():+.3f} px along x, "
                      f"{values[:, 1].mean():+.3f} px along y, largest {np.abs(values).max():.3f} px (crop pixels)",
                      highlight=False)
    if "doubt_report" in changes:
        report = changes["doubt_report"]
        console.print(f"{out}: doubt head from {report['train_crops']} augmented training crops (ridge strength "
                      f"{report['strength']:g}); rank correlation with the error on {report['val_faces']} validation "
                      f"faces' points {report['val_rank_correlation']:.3f}; scores refitted on them", highlight=False)


@app.command()
@user_errors
def export(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="A .pth checkpoint; default: the bundled model."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format", "-f", help="onnx, torchscript or all."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (or stem, with --format all); default: beside the model, or here for the bundled one."),
    opset: int = typer.Option(17, "--opset", min=11, help="ONNX opset."),
    check: bool = typer.Option(True, "--check/--no-check", metavar=FLAG, help="Compare the exported model with PyTorch; over 1e-3 px is an error."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=FLAG, help=QUIET_HELP),
):
    """Export a model to ONNX and/or TorchScript with its preprocessing contract embedded.

    Example: fkd export --model runs/fkd-best/model.pth --format onnx
    """
    from .inputs import check_model_path

    check_model_path(model)
    from .export import export_model
    from .render import console, parity_table

    results = export_model(model, fmt.value, out, opset, check)
    for result in results:
        if quiet:
            continue
        if result.parity:
            console.print(parity_table(result))
        console.print(f"wrote [bold]{result.path}[/]" + (" (checked)" if result.parity else " (not checked)"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
