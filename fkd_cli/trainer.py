"""The training loop, in the phases a run goes through: set-up, resume, data, model, epochs
(train, validate, save). `train()` is what `fkd train` calls."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from .backends import TorchBackend, pick_device
from .bias import fit_bias_correction
from .confidence import fit_confidence, shape_weight_for
from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, check_keypoint_indices, config_from_dict, config_to_dict, dump_config
from .data import ImageCache, KeypointDataset, read_split, train_val_split, training_share
from .distill import Teacher
from .distributed import ResumableSampler, StopRequest, barrier, broadcast_object, init_distributed, shutdown
from .ema import WeightAverage
from .errors import FkdError
from .evaluate import evaluate
from .framing import Preprocess, box_from_detection
from .inference import Predictor
from .laplace import ScaledTrainee
from .models import build_model, model_kwargs
from .optim import make_loss, make_optimizer, make_scheduler
from .outputs import check_output_folder, claim_run_dir, release_if_empty


class Reporter(Protocol):
    """What the trainer tells its caller; the CLI renders it, tests may ignore it."""

    def start(self, total_epochs: int, batches: int, info: dict) -> None: ...
    def batch(self, epoch: int, index: int, loss: float) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def stage(self, name: str, done: int, total: int) -> None: ...


class SilentReporter:
    def start(self, total_epochs, batches, info): pass
    def stage(self, name, done, total): pass
    def batch(self, epoch, index, loss): pass
    def epoch(self, row): pass
    def message(self, text): pass


@dataclass
class TrainResult:
    run_dir: Path
    best: dict
    history: list[dict]
    stopped_early: bool = False


class Trainer:
    """One training run. Each method is one phase; `run()` calls them in order."""

    def __init__(self, cfg: Config, data_dir: Path, out_dir: Path | None = None, resume: Path | None = None,
                 device: str = "auto", reporter: Reporter | None = None):
        self.cfg, self.data_dir, self.out_dir, self.resume = cfg, Path(data_dir), out_dir, resume
        self.reporter = reporter or SilentReporter()
        self.device_name = device
        self.history: list[dict] = []
        self.best: dict = {"nme": float("inf")}
        self.start_epoch = 0

    def run(self) -> TrainResult:
        self.setup_device()
        state = self.load_resume_state()
        self.claim_run_folder()
        try:
            self.build_data(state)
            self.build_model()
            if state is not None:
                self.restore(state)
            stopped = self.fit()
            if not stopped and self.cfg.doubt_head and self.dist.main and "epoch" in self.best:
                if self.cfg.validation == "split" and len(self.val_images):
                    self.fit_doubt_head()
                else:  # like the bias correction: fitted and calibrated on held-out faces, or not at all
                    self.reporter.message("no doubt head: there are no held-out faces of training/ to fit it on")
        finally:
            if self.dist.main and self.resume is None:
                release_if_empty(self.run_dir)  # a run that failed before its first file leaves nothing
        barrier(self.dist)
        shutdown(self.dist)
        return TrainResult(self.run_dir, self.best, self.history, stopped)

    def fit_doubt_head(self) -> None:
        """The kept model gets its doubt head once training is over (the network no longer changes), with
        `fkd calibrate --doubt`'s code: the same head whichever way it is made."""
        from .calibrate import recalibrate

        model = self.run_dir / "model.pth"
        # the images this run decoded are handed on: the head's splits are the run's own (unless a
        # `fraction` of training/ was trained on, when the full train split is read from disk)
        recalibrate(model, self.data_dir, model, doubt=True, progress=lambda done, total: self.reporter.stage("doubt head", done, total),
                    decoded=(self.dataset.images, self.val_images))
        self.reporter.message(f"doubt head fitted: {model}")

    # ---- set-up -----------------------------------------------------------------------------

    def setup_device(self) -> None:
        self.dev = pick_device(self.device_name)
        self.dist = init_distributed(self.dev)
        if self.dev.type == "cuda" and self.dist.world > 1:
            self.dev = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.dev)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        # weights that decay toward zero become subnormal floats, which CPUs compute many times slower
        # (a long CPU run slowed from 90 to 330 s an epoch); flushing them to zero costs no accuracy
        torch.set_flush_denormal(True)

    def load_resume_state(self) -> dict | None:
        if self.resume is None:
            return None
        state = load_checkpoint(self.resume)
        if "optimizer" not in state:
            raise FkdError(f"{self.resume}: has no training state to resume from (use the run's last.pth)")
        self.cfg = config_from_dict(state["config"])
        return state

    def claim_run_folder(self) -> None:
        """Before any data is read: a run folder of our own (created atomically on rank 0), or, when
        resuming, the run's folder, checked to be writable."""
        if self.resume is not None:
            self.run_dir = check_output_folder(Path(self.resume).parent, "--resume")
            return
        run_dir = None
        if self.dist.main:
            run_dir = claim_run_dir(Path(self.out_dir) if self.out_dir else Path("runs") / self.cfg.name)
        self.run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, self.dist))

    # ---- data -------------------------------------------------------------------------------

    def build_data(self, state: dict | None) -> None:
        cfg = self.cfg
        training = read_split(self.data_dir, "training")
        if cfg.keypoints is not None and cfg.keypoints != training.num_keypoints:
            raise FkdError(f"config key 'keypoints' is {cfg.keypoints} but {self.data_dir} has {training.num_keypoints} per row")
        check_keypoint_indices(cfg, training.num_keypoints)  # before any image is decoded
        if cfg.fraction < 1:
            training = training_share(training, cfg.fraction, cfg.seed)
        if training.duplicates:
            self.reporter.message(
                f"warning: {training.duplicates} image(s) appear on more than one row of the training CSV; "
                f"each file stays on one side of the train/val split")
        if cfg.validation == "test":  # the original project's way: all of training/, validated on test/
            self.train_split, self.val_split = training, read_split(self.data_dir, "test")
        else:
            self.train_split, self.val_split = train_val_split(training, cfg.val_fraction, cfg.seed)
        k = self.train_split.num_keypoints
        pp = Preprocess.from_dict(state["preprocess"]) if state is not None else Preprocess.from_config(cfg, k)
        # validation measures the network itself; the correction it yields goes only into saved files
        pp.bias_correction, self.bias_correction = None, None
        if cfg.flip and pp.flip_permutation is None and k != 68:
            raise FkdError(f"config: flip is on but no 'flip_permutation' is given for {k} keypoints; set one or flip: false")
        # teachers are checked before minutes of decoding and detection, not after
        self.teacher = Teacher(cfg.teachers, pp, self.dev) if cfg.teachers else None
        torch.manual_seed(cfg.seed)
        train_images = ImageCache(self.train_split.paths).load_all()
        self.val_images = ImageCache(self.val_split.paths).load_all()
        detector_boxes = self.calibrate_detector(pp, train_images, fit_rule=state is None)
        self.pp = pp
        self.dataset = KeypointDataset(train_images, self.train_split.keypoints, pp, cfg, train=True,
                                       detector_boxes=detector_boxes)
        if cfg.batch_size % self.dist.world:
            raise FkdError(f"batch_size {cfg.batch_size} must divide by the {self.dist.world} processes")
        self.per_rank_batch = cfg.batch_size // self.dist.world
        self.sampler = ResumableSampler(self.dataset, self.dist, cfg.seed)
        self.loader = DataLoader(
            self.dataset, batch_size=self.per_rank_batch, sampler=self.sampler,
            drop_last=len(self.sampler.base) > self.per_rank_batch, num_workers=cfg.num_workers,
            pin_memory=self.dev.type == "cuda", persistent_workers=cfg.num_workers > 0,
        )

    def calibrate_detector(self, pp: Preprocess, images: ImageCache, fit_rule: bool) -> list | None:
        """The detector runs once per training image: its boxes set the rule and serve as crops."""
        if not pp.framer.uses_detector or pp.rule.detector == "none":
            return None
        from .calibrate import calibrate

        calibration = calibrate(pp.rule.detector, images, self.train_split.keypoints,
                                progress=lambda done, total: self.reporter.stage(f"{pp.rule.detector} pass", done, total))
        if fit_rule:
            pp.rule = calibration.rule
        self.reporter.message(
            f"detector rule ({pp.rule.detector}) measured on {pp.rule.samples} of {len(images)} training faces: "
            f"dx={pp.rule.dx:+.3f} dy={pp.rule.dy:+.3f} scale={pp.rule.scale:.3f}"
        )
        return [None if d is None else box_from_detection(d.box, pp) for d in calibration.detections]

    # ---- model ------------------------------------------------------------------------------

    def build_model(self) -> None:
        cfg = self.cfg
        self.kwargs = model_kwargs(cfg.model, cfg)
        self.model = build_model(cfg.model, self.pp.num_keypoints, **self.kwargs).to(self.dev)
        self.cuda_tricks = self.dev.type == "cuda"
        if self.cuda_tricks and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # what the optimiser trains: the network, plus with loss: laplace a scale head that is never saved
        # into model.pth (laplace.py), so the model file is an L1 model's
        self.trainee = ScaledTrainee(self.model).to(self.dev) if cfg.loss == "laplace" else self.model
        self.net = self.trainee
        if self.dist.world > 1:
            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.trainee, device_ids=ids)
        self.optimizer = make_optimizer(cfg, self.trainee)
        self.scheduler = make_scheduler(cfg, self.optimizer, len(self.loader))
        self.loss_fn = make_loss(cfg, self.pp.norm_points)
        # the weights that are validated and saved as the model: the moving average when there is one
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.kept = self.ema.module if self.ema is not None else self.model
        self.predictor = Predictor(TorchBackend(self.kept, self.dev), self.pp, "training", detector="none")

    def restore(self, state: dict) -> None:
        """Continue where last.pth stopped: weights (raw and averaged), optimiser, schedule, batch within
        the epoch. Stopped after an epoch's last batch the run is bit-identical to an unstopped one; inside
        an epoch, the rest of it draws its augmentation anew."""
        # state_dict holds the kept (averaged) weights, train_state_dict the raw ones when they differ
        self.model.load_state_dict(state.get("train_state_dict", state["state_dict"]))
        if self.trainee is not self.model:
            if "scale_state_dict" not in state:
                raise FkdError(f"{self.resume}: this checkpoint has no scale head to continue loss: laplace with")
            self.trainee.scale.load_state_dict(state["scale_state_dict"])
        if self.ema is not None:
            self.ema.restore(state["state_dict"], state.get("ema_updates", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"]
        self.sampler.skip = state.get("batches_done", 0) * self.per_rank_batch
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", self.best))
        if self.start_epoch >= self.cfg.epochs:
            raise FkdError(f"{self.resume}: the run already finished all {self.cfg.epochs} epochs")

    # ---- epochs -----------------------------------------------------------------------------

    def fit(self) -> bool:
        """All remaining epochs; returns True when stopped early by Ctrl-C/SIGTERM."""
        if self.dist.main:
            dump_config(self.cfg, self.run_dir / "config.yaml")
        self.reporter.start(self.cfg.epochs, len(self.loader), {
            "run_dir": str(self.run_dir), "device": str(self.dev), "train": len(self.dataset),
            "val": len(self.val_images), "world": self.dist.world, "start_epoch": self.start_epoch,
            "val_name": "test" if self.cfg.validation == "test" else "val"})
        with StopRequest() as stop:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                started = time.perf_counter()
                train_loss, train_seed, batches_done = self.train_epoch(epoch, stop)
                if stop.requested:
                    self.save_interrupted(epoch, batches_done)
                    return True
                self.check_finite(epoch)
                row = self.validate(epoch, train_loss, train_seed, started)
                self.save_epoch(epoch, row)
        return False

    def train_epoch(self, epoch: int, stop: StopRequest) -> tuple[float, int]:
        """One pass over the training data; returns the mean loss and the index after the last batch."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 1000 + epoch)  # the same epoch sees the same augmentation after --resume
        self.sampler.set_epoch(epoch)
        self.net.train()
        total, total_seed, count = 0.0, 0.0, 0
        done = self.sampler.skip // self.per_rank_batch  # batches of this epoch already trained on
        for index, (x, target, unit) in enumerate(self.loader, start=done):
            done = index + 1
            loss, seed_mse = self.train_step(x, target, unit)
            if not math.isfinite(loss):
                raise self.diverged(f"loss is {loss} at epoch {epoch + 1}, batch {index + 1}")
            total += loss * len(x)
            total_seed += seed_mse * len(x)
            count += len(x)
            self.reporter.batch(epoch, index, loss)
            if stop.should_stop(self.dist, self.dev):
                break
        return total / max(1, count), total_seed / max(1, count), done

    def train_step(self, x: torch.Tensor, target: torch.Tensor, unit: torch.Tensor | None = None) -> tuple[float, float]:
        """One optimisation step on one batch (not stepped when the loss is not finite); returns its
        loss and, given each sample's `unit`, its MSE in the original project's units (else NaN)."""
        cfg, dev = self.cfg, self.dev
        x, target = x.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
        # a weight of 0 leaves the teachers checked (build_data) but never run: their term would be 0
        taught = self.teacher(x).to(dev) if self.teacher is not None and cfg.distill_weight > 0 else None
        if self.cuda_tricks and cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.cuda_tricks and cfg.bf16):
            out = self.net(x).float()
            loss = self.loss_fn(out, target)
            if taught is not None:
                loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * self.loss_fn(out, taught)
        seed_mse = float("nan")
        if unit is not None:  # the error in the original's units, for the same numbers it printed
            coords = out.detach()[:, :target.shape[1]]  # without laplace's scales
            seed_mse = float(((coords - target) * unit.to(dev)[:, None]).pow(2).mean())
        if not torch.isfinite(loss):
            return loss.item(), seed_mse
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.trainee.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.item(), seed_mse

    def check_finite(self, epoch: int) -> None:
        """A loss can stay finite while the weights blow up: catch that before validation uses them."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise self.diverged(f"the weights are no longer finite after epoch {epoch + 1}")

    def validate(self, epoch: int, train_loss: float, train_seed: float, started: float) -> dict:
        self.kept.eval()
        val = evaluate(self.predictor, self.val_images, self.val_split.keypoints, boxes="gt") if len(self.val_images) else None
        if val is not None and not math.isfinite(val.metrics["nme"]):
            raise self.diverged(f"validation predictions are not finite after epoch {epoch + 1}")
        if val is not None:  # scores calibrated on held-out faces, as they will be met
            confidence = fit_confidence(self.train_split.keypoints, val.predictions, val.spread,
                                        shape_weight_for(self.pp.doubt_head))
            self.pp.confidence = confidence.to_dict() if confidence is not None else None
            # held-out faces only: with validation on test/ a correction would be fitted to the test
            if self.cfg.bias_correction and self.cfg.validation == "split":
                self.bias_correction = fit_bias_correction(val, self.val_split.keypoints, self.pp)
        self.sampler.skip = 0
        return {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_mse_seed": train_seed,
            "val_loss": val.metrics["mse_seed"] if val else float("nan"),
            "val_nme": val.metrics["nme"] if val else float("nan"),
            "val_fr_10": val.metrics["fr_10"] if val else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "_metrics": val.metrics if val else {},
        }

    def diverged(self, what: str) -> FkdError:
        kept = (f"the best checkpoint so far (epoch {self.best['epoch']}) is kept in {self.run_dir / 'model.pth'}"
                if "epoch" in self.best else "no checkpoint was written (no epoch finished)")
        return FkdError(f"training diverged: {what}; {kept}; try a lower lr")

    # ---- saving -----------------------------------------------------------------------------

    def payload(self, epoch: int, metrics: dict, with_state: bool) -> dict:
        cfg = self.cfg
        data = {
            "arch": cfg.model, "arch_kwargs": self.kwargs,
            "state_dict": _cpu(self.kept.state_dict()),
            "preprocess": {**self.pp.to_dict(), "bias_correction": self.bias_correction},
            "config": config_to_dict(cfg), "metrics": metrics, "epoch": epoch,
            "data": {"train_images": len(self.train_split.paths), "val_images": len(self.val_split.paths),
                     "data_dir": str(self.data_dir)},
        }
        if with_state:
            data.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                        history=self.history, best=self.best)
            if self.ema is not None:
                data.update(train_state_dict=_cpu(self.model.state_dict()), ema_updates=self.ema.updates)
            if self.trainee is not self.model:
                data.update(scale_state_dict=_cpu(self.trainee.scale.state_dict()))
        return data

    def save_epoch(self, epoch: int, row: dict) -> None:
        metrics = row.pop("_metrics")
        self.history.append(row)
        self.reporter.epoch(row)
        if not self.dist.main:
            return
        score = row["val_nme"] if metrics else -row["epoch"]  # no validation split: the latest epoch is best
        if score < self.best["nme"]:
            self.best = {"nme": score, "epoch": epoch + 1, **metrics}
            save_checkpoint(self.run_dir / "model.pth",
                            self.payload(epoch + 1, self.best if metrics else {"epoch": epoch + 1}, False))
        save_checkpoint(self.run_dir / "last.pth", self.payload(epoch + 1, self.best, True))
        write_history(self.run_dir, self.history)

    def save_interrupted(self, epoch: int, batches_done: int) -> None:
        """--resume continues this epoch after the batches already done, with the same order."""
        if not self.dist.main:
            return
        data = self.payload(epoch, self.best if self.best["nme"] < float("inf") else {}, True)
        save_checkpoint(self.run_dir / "last.pth", {**data, "batches_done": batches_done})
        self.reporter.message(f"stopped: saved {self.run_dir / 'last.pth'}; continue with --resume {self.run_dir / 'last.pth'}")


def train(cfg: Config, data_dir: Path, out_dir: Path | None = None, resume: Path | None = None,
          device: str = "auto", reporter: Reporter | None = None) -> TrainResult:
    """Train `cfg` on the official-layout folder `data_dir`; returns the run folder and history."""
    return Trainer(cfg, data_dir, out_dir, resume, device, reporter).run()


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state_dict.items()}


def write_history(run_dir: Path, history: list[dict]) -> None:
    import pandas as pd

    from .render import plot_losses

    pd.DataFrame(history).to_csv(run_dir / "metrics.csv", index=False)
    plot_losses(history, run_dir / "loss.png")
