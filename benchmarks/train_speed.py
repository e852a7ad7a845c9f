"""Training throughput (images/s) and peak memory of each bundled config on this machine.

    python benchmarks/train_speed.py --data-dir data [--steps 20] [--configs first final fkd-best]

Each config runs in its own process (so peak RSS is its own): a few warm-up steps, then timed
optimisation steps on real augmented batches. Face-framed configs with a detector also time it on
50 training images: `fkd train` runs it once over the training split before the first epoch, and
"total min" adds that pass to the epochs. Prints a table; figures vary run to run, compare ratios
from one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(config: str, data_dir: str, steps: int, threads: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from fkd_cli.config import resolve_config
    from fkd_cli.data import ImageCache, KeypointDataset, load_split
    from fkd_cli.framing import Preprocess
    from fkd_cli.trainer import Trainer

    if threads:
        torch.set_num_threads(threads)
    cfg = resolve_config(config)
    split = load_split(data_dir, "train", cfg.val_fraction, cfg.seed)
    pp = Preprocess.from_config(cfg, split.num_keypoints)
    needed = (steps + 3) * cfg.batch_size
    images = ImageCache(split.paths[:needed]).load_all()
    dataset = KeypointDataset(images, split.keypoints[:needed], pp, cfg, train=True)
    # the trainer's own model, optimiser, schedule and step, on a slice of the data
    trainer = Trainer(cfg, data_dir, device="cpu")
    trainer.setup_device()
    trainer.pp, trainer.loader = pp, DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    trainer.teacher = None  # build_data (skipped here) sets it; the bundled configs distil from no teacher
    trainer.build_model()
    model = trainer.model
    model.train()
    done, started = 0, None
    for step, (x, target, unit) in enumerate(trainer.loader):
        if step == 3:
            started, done = time.perf_counter(), 0
        trainer.train_step(x, target, unit)
        done += len(x)
    seconds = time.perf_counter() - started
    rate = done / seconds
    # an epoch is the training split, or all of training/ when test/ is the validation set
    epoch_images = len(load_split(data_dir, "training").paths) if cfg.validation == "test" else len(split.paths)
    detect_min = 0.0
    if pp.framer.uses_detector and cfg.detector != "none":
        from fkd_cli.detect import build_detector

        detector = build_detector(cfg.detector)
        sample = [images[i] for i in range(min(50, len(images)))]
        start = time.perf_counter()
        for image in sample:
            detector.detect(image)
        detect_min = (time.perf_counter() - start) / len(sample) * epoch_images / 60
    return {
        "config": config, "epoch_images": epoch_images, "model": cfg.model, "input": cfg.input_size, "batch": cfg.batch_size, "epochs": cfg.epochs,
        "images_per_s": rate, "epoch_s": epoch_images / rate, "run_min": cfg.epochs * epoch_images / rate / 60,
        "detect_min": detect_min, "total_min": cfg.epochs * epoch_images / rate / 60 + detect_min,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--configs", nargs="+", default=["first", "final", "fkd-best"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.data_dir, args.steps, args.threads)))
        return
    rows = []
    for config in args.configs:
        cmd = [sys.executable, __file__, "--one", config, "--data-dir", args.data_dir, "--steps", str(args.steps),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{config}: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    header = f"{'config':<10} {'model':<11} {'input':>5} {'batch':>5} {'params':>7} {'img/s':>7} {'epoch s':>8} {'images':>6} {'run min':>8} {'detect min':>10} {'total min':>9} {'peak RSS MB':>12}"
    print(header)
    for r in rows:
        print(f"{r['config']:<10} {r['model']:<11} {r['input']:>5} {r['batch']:>5} {r['params_m']:>6.2f}M {r['images_per_s']:>7.1f} "
              f"{r['epoch_s']:>8.1f} {r['epoch_images']:>6} {r['run_min']:>8.1f} {r['detect_min']:>10.1f} {r['total_min']:>9.1f} {r['peak_rss_mb']:>12.0f}")
    base = rows[0]
    for r in rows[1:]:
        print(f"speed ratio {r['config']} / {base['config']}: {r['images_per_s'] / base['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
