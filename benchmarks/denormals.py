"""Why a long CPU run slowed down, and that the fix holds: training steps with subnormal (denormal)
floats in the weights and Adam's moment buffers, with and without flushing them to zero.

A long `final.yaml` run on this CPU went from 90 s to 330 s an epoch; its `last.pth` held 36% subnormal
weights and 34% subnormal Adam moments (weights that weight decay drives toward zero). This script
puts the same shares of subnormal values into a fresh `final.yaml` network and its optimiser state,
then times training steps on one thread with `torch.set_flush_denormal(False)` (what the run had) and
`True` (what `fkd train` and inference now set), alternating, on the same random batch.

    python benchmarks/denormals.py [--config final.yaml] [--steps 5]

Pass a run's `last.pth` with `--checkpoint` to time that state as it is instead.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path


def subnormal_share(tensors) -> float:
    import torch

    tiny = torch.finfo(torch.float32).tiny
    total = sub = 0
    for t in tensors:
        t = t.detach().float()
        total += t.numel()
        sub += int(((t != 0) & (t.abs() < tiny)).sum())
    return sub / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="final.yaml")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.35, help="share of values made subnormal (synthetic state)")
    args = parser.parse_args()

    import torch

    from fkd_cli.checkpoint import load_checkpoint
    from fkd_cli.config import config_from_dict, resolve_config
    from fkd_cli.landmarks import IBUG68_NORM_POINTS
    from fkd_cli.models import build_model, model_kwargs
    from fkd_cli.optim import make_loss, make_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    state = load_checkpoint(args.checkpoint) if args.checkpoint else None
    cfg = config_from_dict(state["config"]) if state else resolve_config(args.config)
    model = build_model(cfg.model, 68, **model_kwargs(cfg.model, cfg))
    optimizer = make_optimizer(cfg, model)
    x = torch.rand(cfg.batch_size, cfg.channels, cfg.input_size, cfg.input_size)
    y = torch.randn(cfg.batch_size, 136) * 0.3
    loss_fn = make_loss(cfg, list(cfg.norm_points or IBUG68_NORM_POINTS))  # the trainer's loss, any of them

    def step():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if state:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
    else:
        step()  # creates Adam's moment buffers
        with torch.no_grad():
            buffers = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
            for t in list(model.parameters()) + buffers:
                mask = torch.rand_like(t) < args.share
                t[mask] = torch.sign(t[mask]) * 1e-40  # a subnormal float32
    snapshot = ({k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(optimizer.state_dict()))
    weights = list(model.parameters())
    moments = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    print(f"{cfg.name}: subnormal share: weights {100 * subnormal_share(weights):.0f}%, "
          f"Adam moments {100 * subnormal_share(moments):.0f}%")
    times = {False: [], True: []}
    for _ in range(args.steps):
        for flush in (False, True):
            model.load_state_dict(snapshot[0])
            optimizer.load_state_dict(copy.deepcopy(snapshot[1]))
            torch.set_flush_denormal(flush)
            started = time.perf_counter()
            step()
            times[flush].append(time.perf_counter() - started)
    off, on = (sorted(times[f])[len(times[f]) // 2] for f in (False, True))
    print(f"one training step (batch {cfg.batch_size}, 1 thread, median of {args.steps}): "
          f"{off:.3f} s without flushing, {on:.3f} s with flushing ({off / on:.1f}x)")


if __name__ == "__main__":
    main()
