"""A trained `squash` model's test MSE (the original's units) taken two ways: with BatchNorm on its
running statistics (`net.eval()`, what `fkd train` and `fkd evaluate` report) and on each test batch's own
statistics (dropout still off): what a test loop without `net.eval()`, like one the original project may
have had, would report. Batches of 10, in file order and in a seeded shuffled order.

    python benchmarks/bn_test_loop.py runs/final/model.pth --data-dir data
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path


def batch_statistics_copy(model):
    """A copy of `model` (in eval mode) whose BatchNorm layers use each batch's own statistics, dropout
    still off: the network as a test loop without `net.eval()` runs it. The model itself is untouched."""
    import torch

    probe = copy.deepcopy(model)
    for module in probe.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()
    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a checkpoint trained with framing: squash (final.yaml, first.yaml)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()

    import torch

    from fkd_cli.checkpoint import build_from_checkpoint, load_checkpoint
    from fkd_cli.config import resolve_config
    from fkd_cli.data import ImageCache, KeypointDataset, read_split
    from fkd_cli.framing import Preprocess

    torch.set_num_threads(1)
    data = load_checkpoint(args.model)
    pp = Preprocess.from_dict(data["preprocess"])
    if pp.framing != "squash":
        raise SystemExit(f"{args.model}: framing {pp.framing!r}; this check is for squash models (the original's frame)")
    model = build_from_checkpoint(data, args.model).eval()
    test = read_split(args.data_dir, "test")
    cfg = resolve_config("final.yaml", {})  # only its augmentation keys matter here, and train=False uses none
    dataset = KeypointDataset(ImageCache(test.paths).load_all(), test.keypoints, pp, cfg, train=False)
    x, y = (torch.stack(t) for t in zip(*[dataset[i][:2] for i in range(len(dataset))]))
    probe = batch_statistics_copy(model)
    batch = args.batch
    with torch.no_grad():
        running = torch.cat([model(x[s:s + batch]) for s in range(0, len(x), batch)])
        print(f"test MSE, BatchNorm on running statistics (net.eval()): {float(((running - y) ** 2).mean()):.5f}")
        orders = {"file order": torch.arange(len(x)),
                  "shuffled": torch.randperm(len(x), generator=torch.Generator().manual_seed(0))}
        for name, order in orders.items():
            out = torch.empty_like(running)
            for s in range(0, len(x), batch):
                index = order[s:s + batch]
                out[index] = probe(x[index])
            print(f"test MSE, BatchNorm on each batch of {batch} ({name}): {float(((out - y) ** 2).mean()):.5f}")


if __name__ == "__main__":
    main()
