"""The training loop and the one evaluation loop (used by `fkd evaluate` and by training's validation)."""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, config_from_dict, config_to_dict, dump_config
from .data import ImageCache, KeypointDataset, Split, read_split, train_val_split
from .detect import match_detection
from .errors import FkdError
from .framing import Preprocess, box_from_detection, box_from_points
from .backends import TorchBackend, pick_device
from .inference import Predictor
from .metrics import per_image_nme, summarize
from .models import build_model, model_kwargs


class Reporter(Protocol):
    """What the trainer tells its caller; the CLI renders it, tests may ignore it."""

    def start(self, total_epochs: int, batches: int, info: dict) -> None: ...
    def batch(self, epoch: int, index: int, loss: float) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def start(self, total_epochs, batches, info): pass
    def batch(self, epoch, index, loss): pass
    def epoch(self, row): pass
    def message(self, text): pass


# ---- evaluation ---------------------------------------------------------------------------------


@dataclass
class EvalResult:
    metrics: dict
    nme: torch.Tensor  # per image
    predictions: torch.Tensor  # (N, K, 2) image pixels
    missed: int
    count: int
    boxes: str
    paths: list = field(default_factory=list)
    missed_mask: torch.Tensor | None = None  # (N,) True where no detection held the face


def evaluate(predictor: Predictor, images: ImageCache, keypoints: torch.Tensor, boxes: str = "detector",
             progress=None) -> EvalResult:
    """The one evaluation loop: initial boxes (detector or ground truth), the predictor, the metrics.

    With `boxes="detector"` the detection that holds the annotated face is used; where there is
    none, the whole image is the box and the image counts as `missed`.
    """
    if boxes not in ("detector", "gt"):
        raise FkdError(f"--boxes {boxes}: choose detector or gt")
    pp = predictor.pp
    initial, missed, all_images, whole_image = [], 0, [], []
    for i in range(len(images)):
        image = images[i]
        all_images.append(image)
        if pp.framing == "frame":
            initial.append(predictor.initial_box(image, None))
        elif boxes == "gt":
            initial.append(box_from_points(keypoints[i], pp.face_margin))
        else:
            detection = match_detection(predictor.detect(image), keypoints[i])
            missed += detection is None
            whole_image.append(detection is None)
            initial.append(predictor.initial_box(image, detection))
        if progress is not None:
            progress(i + 1, len(images))
    predictions = predictor.keypoints_in_boxes(all_images, initial, whole_image)
    sizes = torch.tensor([list(img.shape[-2:]) for img in all_images], dtype=torch.float32)
    norm = pp.norm_points or [0, 1]
    metrics = summarize(predictions, keypoints, sizes, norm)
    metrics["missed"] = missed
    nme = per_image_nme(predictions, keypoints, norm)
    mask = torch.tensor(whole_image, dtype=torch.bool) if whole_image else torch.zeros(len(images), dtype=torch.bool)
    return EvalResult(metrics, nme, predictions, missed, len(images), boxes, list(images.paths), mask)


# ---- training ------------------------------------------------------------------------------------


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 0.1, eps: float = 0.02) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) on targets in [-1, 1]: log-shaped near zero, L1 far away."""
    x = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


LOSSES = {"mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "smooth_l1": lambda p, t: nn.functional.smooth_l1_loss(p, t, beta=0.02), "wing": wing_loss}


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)


def make_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def unique_run_dir(base: Path) -> Path:
    """runs/final, then runs/final2, runs/final3...: an earlier run is never overwritten."""
    if not base.exists():
        return base
    n = 2
    while (base.parent / f"{base.name}{n}").exists():
        n += 1
    return base.parent / f"{base.name}{n}"


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between batches, so the run stops after saving."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def should_stop(self, dist_info: "DistInfo", device: torch.device) -> bool:
        """Under DDP every rank must stop at the same batch, or the others hang in an all-reduce."""
        if dist_info.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if self.requested else 0.0], device=device)  # NCCL reduces only on the GPU
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        return self.requested

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class ResumableSampler(torch.utils.data.Sampler):
    """A seeded per-epoch shuffle (split across DDP ranks) that can skip batches already trained on."""

    def __init__(self, dataset, dist_info: DistInfo, seed: int):
        from torch.utils.data.distributed import DistributedSampler

        self.base = DistributedSampler(dataset, num_replicas=dist_info.world, rank=dist_info.rank, shuffle=True,
                                       seed=seed, drop_last=dist_info.world > 1)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self) -> int:
        return len(self.base) - self.skip


@dataclass
class TrainResult:
    run_dir: Path
    best: dict
    history: list[dict]
    stopped_early: bool = False


def _split_dataset(cfg: Config, data_dir: Path) -> tuple[Split, Split]:
    training = read_split(data_dir, "training")
    if cfg.keypoints is not None and cfg.keypoints != training.num_keypoints:
        raise FkdError(f"config key 'keypoints' is {cfg.keypoints} but {data_dir} has {training.num_keypoints} per row")
    return train_val_split(training, cfg.val_fraction, cfg.seed)


def train(cfg: Config, data_dir: Path, out_dir: Path | None = None, resume: Path | None = None,
          device: str = "auto", reporter: Reporter | None = None) -> TrainResult:
    """Train `cfg` on the official-layout folder `data_dir`; returns the run folder and history."""
    reporter = reporter or SilentReporter()
    dev = pick_device(device)
    dist_info = init_distributed(dev)
    if dev.type == "cuda" and dist_info.world > 1:
        dev = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(dev)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        if "optimizer" not in state:
            raise FkdError(f"{resume}: has no training state to resume from (use the run's last.pth)")
        cfg = config_from_dict(state["config"])
        run_dir = Path(resume).parent
    else:
        run_dir = unique_run_dir(Path(out_dir) if out_dir else Path("runs") / cfg.name)

    train_split, val_split = _split_dataset(cfg, Path(data_dir))
    num_keypoints = train_split.num_keypoints
    pp = Preprocess.from_config(cfg, num_keypoints)
    if cfg.flip and pp.flip_permutation is None and num_keypoints != 68:
        raise FkdError(f"config: flip is on but no 'flip_permutation' is given for {num_keypoints} keypoints; set one or flip: false")

    torch.manual_seed(cfg.seed)
    train_images = ImageCache(train_split.paths).load_all()
    val_images = ImageCache(val_split.paths).load_all()

    detector_boxes = None
    if state is not None:
        pp = Preprocess.from_dict(state["preprocess"])
    if pp.framing == "face" and pp.rule.detector != "none":
        from .calibrate import calibrate

        # the detector runs once per training image: its boxes set the rule and serve as crops
        calibration = calibrate(pp.rule.detector, train_images, train_split.keypoints)
        if state is None:
            pp.rule = calibration.rule
        detector_boxes = [None if d is None else box_from_detection(d.box, pp) for d in calibration.detections]
        reporter.message(
            f"detector rule ({pp.rule.detector}) measured on {pp.rule.samples} of {len(train_images)} training faces: "
            f"dx={pp.rule.dx:+.3f} dy={pp.rule.dy:+.3f} scale={pp.rule.scale:.3f}"
        )

    kwargs = model_kwargs(cfg.model, cfg)
    model = build_model(cfg.model, num_keypoints, **kwargs).to(dev)
    use_cuda_tricks = dev.type == "cuda"
    if use_cuda_tricks and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if dist_info.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    dataset = KeypointDataset(train_images, train_split.keypoints, pp, cfg, train=True, detector_boxes=detector_boxes)
    if cfg.batch_size % dist_info.world:
        raise FkdError(f"batch_size {cfg.batch_size} must divide by the {dist_info.world} processes")
    per_rank_batch = cfg.batch_size // dist_info.world
    sampler = ResumableSampler(dataset, dist_info, cfg.seed)
    loader = DataLoader(
        dataset, batch_size=per_rank_batch, sampler=sampler, drop_last=len(sampler.base) > per_rank_batch,
        num_workers=cfg.num_workers, pin_memory=use_cuda_tricks, persistent_workers=cfg.num_workers > 0,
    )
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, len(loader))
    loss_fn = LOSSES[cfg.loss]
    history: list[dict] = []
    best = {"nme": float("inf")}
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"]
        sampler.skip = state.get("batches_done", 0) * per_rank_batch
        history = list(state.get("history", []))
        best = dict(state.get("best", best))
        if start_epoch >= cfg.epochs:
            raise FkdError(f"{resume}: the run already finished all {cfg.epochs} epochs")

    if dist_info.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")

    def payload(epoch: int, metrics: dict, with_state: bool) -> dict:
        data = {
            "arch": cfg.model, "arch_kwargs": kwargs, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "preprocess": pp.to_dict(), "config": config_to_dict(cfg), "metrics": metrics, "epoch": epoch,
            "data": {"train_images": len(train_split.paths), "val_images": len(val_split.paths), "data_dir": str(data_dir)},
        }
        if with_state:
            data.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), history=history, best=best)
        return data

    predictor = Predictor(TorchBackend(model, dev), pp, "training", detector="none")
    reporter.start(cfg.epochs, len(loader), {"run_dir": str(run_dir), "device": str(dev), "train": len(dataset),
                                            "val": len(val_images), "world": dist_info.world, "start_epoch": start_epoch})
    stopped = False
    with StopRequest() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            torch.manual_seed(cfg.seed * 1000 + epoch)  # the same epoch sees the same augmentation after --resume
            sampler.set_epoch(epoch)
            net.train()
            total, count = 0.0, 0
            for index, (x, target) in enumerate(loader, start=sampler.skip // per_rank_batch):
                x, target = x.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
                if use_cuda_tricks and cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_cuda_tricks and cfg.bf16):
                    loss = loss_fn(net(x).float(), target)
                if not torch.isfinite(loss):
                    raise FkdError(
                        f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, batch {index + 1}; "
                        f"the best checkpoint so far is kept in {run_dir}; try a lower lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(x)
                count += len(x)
                reporter.batch(epoch, index, loss.item())
                if stop.should_stop(dist_info, dev):
                    break
            if stop.requested:
                stopped = True
                if dist_info.main:
                    # --resume continues this epoch after the batches already done, with the same order
                    data = payload(epoch, best if best["nme"] < float("inf") else {}, True)
                    save_checkpoint(run_dir / "last.pth", {**data, "batches_done": index + 1})
                    reporter.message(f"stopped: saved {run_dir / 'last.pth'}; continue with --resume {run_dir / 'last.pth'}")
                break
            model.eval()
            val = evaluate(predictor, val_images, val_split.keypoints, boxes="gt") if len(val_images) else None
            row = {
                "epoch": epoch + 1,
                "train_loss": total / max(1, count),
                "val_loss": val.metrics["mse_seed"] if val else float("nan"),
                "val_nme": val.metrics["nme"] if val else float("nan"),
                "val_fr_10": val.metrics["fr_10"] if val else float("nan"),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            sampler.skip = 0
            history.append(row)
            reporter.epoch(row)
            if dist_info.main:
                score = row["val_nme"] if val else -row["epoch"]
                if score < best["nme"]:
                    best = {"nme": score, "epoch": epoch + 1, **({k: v for k, v in val.metrics.items()} if val else {})}
                    save_checkpoint(run_dir / "model.pth", payload(epoch + 1, best, False))
                save_checkpoint(run_dir / "last.pth", payload(epoch + 1, best, True))
                write_history(run_dir, history)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(run_dir, best, history, stopped)


def write_history(run_dir: Path, history: list[dict]) -> None:
    import pandas as pd

    from .render import plot_losses

    pd.DataFrame(history).to_csv(run_dir / "metrics.csv", index=False)
    plot_losses(history, run_dir / "loss.png")
