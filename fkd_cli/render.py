"""Everything a person sees: rich tables and progress, annotated images, plots. Imports no torch at
the top: the CLI prints its errors through this module before any model is loaded."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .landmarks import contour_edges

console = Console(stderr=False)
err_console = Console(stderr=True)
PLAIN_EVERY_S = 5.0  # how often a log (stderr not a terminal) gets a progress line


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar on stderr, so that results on stdout (`--json -`) stay clean."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=transient,
    )


class PlainProgress:
    """For logs and pipes: a plain line every few seconds instead of a bar that nobody sees."""

    def __init__(self, name: str, total: int | None = None, every: float = PLAIN_EVERY_S):
        self.name, self.total, self.every = name, total, every
        self.started = self.last = time.monotonic()

    def update(self, done: int, total: int | None = None, status: str = "") -> None:
        self.total = total if total is not None else self.total
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            of = f"/{self.total} ({100 * done / self.total:.0f}%)" if self.total else ""
            extra = f", {status}" if status else ""
            print(f"{self.name}: {done}{of}{extra}, {now - self.started:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class BarProgress:
    """A rich bar on a terminal, removed when done."""

    def __init__(self, name: str, total: int | None = None):
        self.bar = make_progress(transient=True)
        self.task = self.bar.add_task(name, total=total, status="")

    def update(self, done: int, total: int | None = None, status: str = "") -> None:
        self.bar.update(self.task, completed=done, status=status, **({"total": total} if total is not None else {}))

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()
        return False


class NoProgress:
    def update(self, done: int, total: int | None = None, status: str = "") -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress(name: str, total: int | None = None, quiet: bool = False):
    """The right progress display: none with --quiet, a bar on a terminal, plain lines in a log."""
    if quiet:
        return NoProgress()
    return BarProgress(name, total) if err_console.is_terminal else PlainProgress(name, total)


class RichTrainReporter:
    """Progress over batches and epochs, and a table row after each epoch. On a terminal the progress
    is a bar; in a log it is a plain line every few seconds."""

    # "train MSE" and "{val} MSE" are both in the original project's units (MSE of (keypoint - 100) / 50
    # on its 224-pixel frame), whatever the configured loss: the two columns compare directly.
    # Short headers: a log is 80 columns wide, and a wrapped header or a cut-off number helps nobody.
    COLUMNS = ("epoch", "train loss", "train MSE", "{val} MSE", "NME %", "FR@10 %", "lr", "s")

    def __init__(self, show: bool = True):
        self.show = show
        self.live = show and err_console.is_terminal
        self.progress = make_progress(transient=True)
        self.rows: list[dict] = []
        self.stages: dict[str, object] = {}
        self.plain = PlainProgress("batches")
        self.total_epochs = 0
        self.val_name = "val"

    def start(self, total_epochs, batches, info):
        self.total_epochs, self.batches = total_epochs, batches
        self.val_name = info.get("val_name", "val")
        if not self.show:
            return
        where = " (test/ is the validation set: its figures are not held out)" if self.val_name == "test" else ""
        if not info["val"]:
            where = " (no validation: model.pth is the last epoch)"
        console.print(
            f"training on {info['device']} ({info['world']} process{'es' if info['world'] > 1 else ''}): "
            f"{info['train']} train / {info['val']} {self.val_name} images{where} -> [bold]{info['run_dir']}[/]"
        )
        if self.live:
            self.progress.start()
            self.epochs_task = self.progress.add_task("epochs", total=total_epochs, completed=info["start_epoch"], status="")
            self.batch_task = self.progress.add_task("batches", total=batches, status="")

    def stage(self, name: str, done: int, total: int) -> None:
        """Progress of a set-up pass (the detector over the training images)."""
        if not self.show:
            return
        if not self.live:
            self.stages.setdefault(name, PlainProgress(name, total)).update(done, total)
            return
        if name not in self.stages:
            self.progress.start()
            self.stages[name] = self.progress.add_task(name, total=total, status="")
        self.progress.update(self.stages[name], completed=done, total=total)

    def batch(self, epoch, index, loss):
        if not self.show:
            return
        if self.live:
            self.progress.update(self.batch_task, completed=index + 1, status=f"loss {loss:.4g}")
        else:
            self.plain.name = f"epoch {epoch + 1}/{self.total_epochs}, batches"
            self.plain.update(index + 1, self.batches, f"loss {loss:.4g}")

    def epoch(self, row):
        self.rows.append(row)
        if not self.show:
            return
        if self.live:
            self.progress.update(self.epochs_task, advance=1)
            self.progress.reset(self.batch_task)
        console.print(self.table([row], header=len(self.rows) == 1))

    def message(self, text):
        if self.show:
            console.print(text, highlight=False, soft_wrap=True)

    def close(self):
        if self.live:
            self.progress.stop()

    def table(self, rows, header=True) -> Table:
        table = Table(show_header=header, box=None, pad_edge=False)
        widths = (5, 10, 9, 9, 6, 7, 8, 5)
        for name, width in zip(self.COLUMNS, widths):
            table.add_column(name.format(val=self.val_name), justify="right", min_width=width)
        for r in rows:
            table.add_row(str(r["epoch"]), _cell(r["train_loss"], ".5f"), _cell(r.get("train_mse_seed", math.nan), ".5f"),
                          _cell(r["val_loss"], ".5f"), _cell(100 * r["val_nme"], ".2f"), _cell(100 * r["val_fr_10"], ".1f"),
                          f"{r['lr']:.2e}", f"{r['seconds']:.0f}")
        return table


def _cell(value: float, spec: str) -> str:
    """A number for the epoch table; "-" where there is none (no validation split: val_fraction=0)."""
    return "-" if math.isnan(value) else format(value, spec)


def metrics_table(result: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    percent = ("nme", "nme_median", "fr_8", "fr_10", "auc_10")
    for key in percent:
        table.add_row(key, f"{100 * result[key]:.2f} %")
    table.add_row("mse_seed", f"{result['mse_seed']:.5f}")
    for name, value in result.get("regions", {}).items():
        table.add_row(f"nme {name}", f"{100 * value:.2f} %")
    table.add_row("images", str(result["images"]))
    table.add_row("missed (no face found)", str(result["missed"]))
    return table


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r.get("train_mse_seed", float("nan")) for r in history], label="train MSE (original units)")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="val loss (original units)")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [100 * r["val_nme"] for r in history], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val NME %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ced(nme, path: Path, label: str, limit: float = 0.10) -> None:
    """The cumulative error distribution up to `limit` (NME on x, share of images on y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import auc, cumulative_curve

    xs, ys = cumulative_curve(nme, limit)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([100 * x for x in xs], ys, label=f"{label} (AUC@10 {100 * auc(nme, limit):.1f}%)")
    ax.set_xlabel("NME (% of outer-eye-corner distance)")
    ax.set_ylabel("share of images")
    ax.set_xlim(0, 100 * limit)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def annotate(image, faces: list, track_ids: list | None = None):
    """A copy of `image` (uint8 HxWx3 RGB) with each face's box, landmark contours and points, drawn at a
    size that follows that face (a 100-px face in a 4000-px photo gets thin lines, a close-up thick
    ones), and its track id when given. Drawn with OpenCV: about 1 ms a face, so video keeps up."""
    import cv2
    import numpy as np

    canvas = np.array(image, dtype=np.uint8)  # a copy: the input stays as it was
    for n, face in enumerate(faces):
        x0, y0, x1, y1 = (float(v) for v in face.box)
        radius = max(1, round(max(x1 - x0, y1 - y0) / 60))
        line = max(1, radius // 2)
        cv2.rectangle(canvas, (round(x0), round(y0)), (round(x1), round(y1)), (0, 255, 0), line, cv2.LINE_AA)
        points = np.asarray(face.keypoints, dtype=np.float32)
        for a, b in contour_edges(len(points)):
            cv2.line(canvas, tuple(np.round(points[a]).astype(int)), tuple(np.round(points[b]).astype(int)),
                     (255, 0, 0), line, cv2.LINE_AA)
        for x, y in np.round(points).astype(int):
            cv2.circle(canvas, (int(x), int(y)), radius, (255, 0, 0), -1, cv2.LINE_AA)
        if track_ids is not None:
            cv2.putText(canvas, f"#{track_ids[n]}", (round(x0), max(12, round(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.4, radius / 3), (0, 255, 0), line, cv2.LINE_AA)
    return canvas


def draw_faces(image, faces: list, out_path: Path) -> None:
    """`annotate`, saved: a `.jpg` path as a JPEG at quality 95, anything else as PNG."""
    from PIL import Image

    picture = Image.fromarray(annotate(image, faces))
    if Path(out_path).suffix.lower() == ".jpg":
        picture.save(out_path, format="JPEG", quality=95)
    else:
        picture.save(out_path, format="PNG")


def predict_table(report: dict, max_rows: int = 40):
    """A row per image and video, or a summary line for long lists."""
    images = report["images"] + [
        {"path": v["path"], "faces": [None] * v.get("tracks", 0), "seconds": v.get("seconds", 0.0), "error": v["error"],
         "frames": v.get("frames", 0)} for v in report.get("videos", [])]
    faces = sum(len(item["faces"]) for item in images)
    failed = [item for item in images if item["error"]]
    if len(images) > max_rows:
        return (f"{len(images)} images: {faces} faces, {sum(1 for i in images if not i['faces'] and not i['error'])} "
                f"without a face, {len(failed)} failed" + (f" (first: {failed[0]['error']})" if failed else ""))
    table = Table()
    table.add_column("image", overflow="fold")
    table.add_column("faces (video: tracks)", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("error", overflow="fold")
    for item in images:
        table.add_row(str(item["path"]), str(len(item["faces"])), f"{1000 * item['seconds']:.0f}", item["error"] or "")
    return table


def parity_table(result) -> Table:
    table = Table(title=f"{result.format} vs PyTorch (keypoint pixels)")
    for name in ("input", "batch", "max |diff|", "mean |diff|"):
        table.add_column(name, justify="right" if name != "input" else "left")
    for row in result.parity:
        table.add_row(row["input"], str(row["batch"]), f"{row['max']:.2e}", f"{row['mean']:.2e}")
    return table


def config_table(keys: list[tuple[str, object, str]], cfg=None) -> Table:
    """Every config key with its default and meaning (and a config's own value, when given)."""
    table = Table(title="config keys (set in a YAML file, or with --set key=value)")
    table.add_column("key", style="bold")
    table.add_column("default")
    if cfg is not None:
        table.add_column(f"{cfg.name}")
    table.add_column("meaning", overflow="fold")
    for name, default, meaning in keys:
        row = [name, repr(default)] + ([repr(getattr(cfg, name))] if cfg is not None else []) + [meaning]
        table.add_row(*row)
    return table
