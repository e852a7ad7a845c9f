"""Everything a person sees: rich tables and progress, annotated images, plots."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .landmarks import contour_edges

console = Console(stderr=False)
err_console = Console(stderr=True)


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient,
    )


class RichTrainReporter:
    """Progress over batches and epochs, and a table row after each epoch."""

    COLUMNS = ("epoch", "train loss", "val loss", "val NME %", "val FR@10 %", "lr", "s")

    def __init__(self, show: bool = True):
        self.show = show
        self.progress = make_progress(transient=True)
        self.rows: list[dict] = []

    def start(self, total_epochs, batches, info):
        if not self.show:
            return
        console.print(
            f"training on {info['device']} ({info['world']} process{'es' if info['world'] > 1 else ''}): "
            f"{info['train']} train / {info['val']} val images -> [bold]{info['run_dir']}[/]"
        )
        self.progress.start()
        self.epochs_task = self.progress.add_task("epochs", total=total_epochs, completed=info["start_epoch"], status="")
        self.batch_task = self.progress.add_task("batches", total=batches, status="")

    def batch(self, epoch, index, loss):
        if self.show:
            self.progress.update(self.batch_task, completed=index + 1, status=f"loss {loss:.4g}")

    def epoch(self, row):
        self.rows.append(row)
        if not self.show:
            return
        self.progress.update(self.epochs_task, advance=1)
        self.progress.reset(self.batch_task)
        self.progress.console.print(self.table([row], header=len(self.rows) == 1))

    def message(self, text):
        if self.show:
            self.progress.console.print(text)

    def close(self):
        if self.show:
            self.progress.stop()

    def table(self, rows, header=True) -> Table:
        table = Table(show_header=header, box=None, pad_edge=False)
        widths = (5, 10, 10, 9, 11, 8, 4)
        for name, width in zip(self.COLUMNS, widths):
            table.add_column(name, justify="right", min_width=width)
        for r in rows:
            table.add_row(str(r["epoch"]), f"{r['train_loss']:.5f}", f"{r['val_loss']:.5f}", f"{100 * r['val_nme']:.2f}",
                          f"{100 * r['val_fr_10']:.1f}", f"{r['lr']:.2e}", f"{r['seconds']:.0f}")
        return table


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
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="val loss (seed MSE)")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [100 * r["val_nme"] for r in history], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val NME %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ced(nme: torch.Tensor, path: Path, label: str, limit: float = 0.10) -> None:
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


def draw_faces(image: torch.Tensor, faces: list, out_path: Path) -> None:
    """An annotated copy: the face box, the landmark contours and the points."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes, draw_keypoints

    canvas = image
    side = max(image.shape[-2:])
    radius = max(1, round(side / 250))
    if faces:
        boxes = torch.tensor([f.box for f in faces], dtype=torch.float32)
        canvas = draw_bounding_boxes(canvas, boxes, colors="lime", width=max(1, radius))
        points = torch.stack([f.keypoints for f in faces]).float()
        edges = contour_edges(points.shape[1]) or None
        canvas = draw_keypoints(canvas, points, connectivity=edges, colors="red", radius=radius, width=max(1, radius // 2))
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(out_path)


def predict_table(report: dict, max_rows: int = 40):
    """A row per image, or a summary line for long lists."""
    images = report["images"]
    faces = sum(len(item["faces"]) for item in images)
    failed = [item for item in images if item["error"]]
    if len(images) > max_rows:
        return (f"{len(images)} images: {faces} faces, {sum(1 for i in images if not i['faces'] and not i['error'])} "
                f"without a face, {len(failed)} failed" + (f" (first: {failed[0]['error']})" if failed else ""))
    table = Table()
    table.add_column("image", overflow="fold")
    table.add_column("faces", justify="right")
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
