"""Why do the original project's networks train slowly here? Short runs of `final.yaml`'s network, one
difference at a time, against the Udacity template's own data pipeline written out as it was.

Each run: the same seeded 1000 images of `training/`, 300 of `test/`, batch 10, Adam (lr 3e-4, weight
decay 1e-4, as `final.yaml`), one thread. Prints, after each epoch, the training MSE and the test MSE, in
the original's units (MSE of `(keypoint - 100) / 50` on its 224-pixel frame), with the mean-shape guess
for scale: a network that has learned nothing about where the face is scores about that.

    python benchmarks/seed_ablation.py --data-dir data --variant base --epochs 3
    python benchmarks/seed_ablation.py --data-dir data --variant centred --epochs 3

Variants:
  base      fkd's pipeline as `final.yaml` configures it (shorter side to 250, random 224 crop, grey, /255)
  template  the template's pipeline: matplotlib-2-style uint8 read, alpha dropped, cv2.resize by the
            shorter side, numpy random crop, cv2 grey, /255 (its test MSE is on random crops, as the
            template's test loader did, so compare its train column)
  square    the template's pipeline with a square 250x250 resize instead (an easier task: smaller crop offsets)
  png-float the pixel scale a newer matplotlib gives for these PNG files (0..1, then /255 again)
  lr1e-3, lr1e-4   other learning rates
  dropout0  no dropout
  xavier, kaiming  other weight initialisations (PyTorch's default is kaiming-uniform with a=sqrt(5))
  centred   pixels centred and scaled: (p / 255 - 0.5) / 0.25 instead of p / 255
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

VARIANTS = ("base", "template", "square", "png-float", "lr1e-3", "lr1e-4", "dropout0", "xavier", "kaiming", "centred",
            "batchnorm", "wd0")


def template_sample(image, points, rng, square: bool):
    """The template's Rescale(250) -> RandomCrop(224) -> Normalize() on one (uint8 RGB, keypoints) pair."""
    import cv2
    import torch

    h, w = image.shape[:2]
    if square:
        new_h, new_w = 250, 250
    elif h > w:
        new_h, new_w = int(250 * h / w), 250
    else:
        new_h, new_w = 250, int(250 * w / h)
    image = cv2.resize(image, (new_w, new_h))
    points = points * [new_w / w, new_h / h]
    top = rng.integers(0, new_h - 224) if new_h > 224 else 0
    left = rng.integers(0, new_w - 224) if new_w > 224 else 0
    image = image[top:top + 224, left:left + 224]
    points = points - [left, top]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) / 255.0
    return (torch.tensor(grey, dtype=torch.float32)[None],
            torch.tensor((points - 100) / 50.0, dtype=torch.float32).reshape(-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--variant", choices=VARIANTS, default="base")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--test-images", type=int, default=300)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from fkd_cli.config import resolve_config
    from fkd_cli.data import ImageCache, KeypointDataset, read_split
    from fkd_cli.framing import Preprocess
    from fkd_cli.models import build_model, model_kwargs

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    variant = args.variant
    train = read_split(args.data_dir, "training")
    order = torch.randperm(len(train.paths), generator=torch.Generator().manual_seed(0))[: args.images].tolist()
    train = train.subset(sorted(order), "train")
    test = read_split(args.data_dir, "test").subset(list(range(args.test_images)), "test")

    overrides = {"png-float": {"std": [255.0]}, "dropout0": {"dropout": 0.0},
                 "centred": {"mean": [0.5], "std": [0.25]}}.get(variant, {})
    cfg = resolve_config("final.yaml", overrides)
    pp = Preprocess.from_config(cfg, train.num_keypoints)
    model = build_model(cfg.model, train.num_keypoints, **model_kwargs(cfg.model, cfg))
    if variant in ("xavier", "kaiming"):
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                if variant == "xavier":
                    torch.nn.init.xavier_uniform_(module.weight)
                else:
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)
    if variant == "batchnorm":  # a BatchNorm after every conv (not in the original's README): does normalising help?
        layers = []
        for layer in model.features:
            layers.append(layer)
            if isinstance(layer, torch.nn.Conv2d):
                layers.append(torch.nn.BatchNorm2d(layer.out_channels))
        model.features = torch.nn.Sequential(*layers)
    lr = {"lr1e-3": 1e-3, "lr1e-4": 1e-4}.get(variant, cfg.lr)
    weight_decay = 0.0 if variant == "wd0" else cfg.weight_decay  # Adam's L2 term, not decoupled (AdamW)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    if variant in ("template", "square"):
        rng = np.random.default_rng(0)

        def read(path):  # matplotlib 2's imread on these files: PIL, uint8, alpha dropped
            return np.asarray(Image.open(path))[:, :, :3]

        train_images, test_images = [read(p) for p in train.paths], [read(p) for p in test.paths]
        train_item = lambda i: template_sample(train_images[i], train.keypoints[i].double().numpy(), rng, variant == "square")
        test_item = lambda i: template_sample(test_images[i], test.keypoints[i].double().numpy(), rng, variant == "square")
    else:
        train_set = KeypointDataset(ImageCache(train.paths).load_all(), train.keypoints, pp, cfg, train=True)
        test_set = KeypointDataset(ImageCache(test.paths).load_all(), test.keypoints, pp, cfg, train=False)
        train_item, test_item = (lambda i: train_set[i][:2]), (lambda i: test_set[i][:2])

    batch = cfg.batch_size
    for epoch in range(args.epochs):
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        shuffled = torch.randperm(len(train.paths)).tolist()
        for start in range(0, len(shuffled) - batch + 1, batch):
            x, y = (torch.stack(t) for t in zip(*[train_item(i) for i in shuffled[start:start + batch]]))
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(x), count + len(x)
        model.eval()
        with torch.no_grad():
            x, y = (torch.stack(t) for t in zip(*[test_item(i) for i in range(len(test.paths))]))
            test_mse = float(torch.nn.functional.mse_loss(model(x), y))
        print(f"{variant} epoch {epoch + 1}: train MSE {total / count:.4f}  test MSE {test_mse:.4f}  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    # after training, so that the random draws of the runs above do not depend on it
    targets = torch.stack([train_item(i)[1] for i in range(len(train.paths))])
    test_targets = torch.stack([test_item(i)[1] for i in range(len(test.paths))])
    mean = targets.mean(0)
    print(f"{variant}: the mean-shape guess scores train MSE {((targets - mean) ** 2).mean():.4f}, "
          f"test MSE {((test_targets - mean) ** 2).mean():.4f}")


if __name__ == "__main__":
    main()
