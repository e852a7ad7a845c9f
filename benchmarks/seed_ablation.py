"""Why did our reconstructions of the original project's final run train slowly? Short runs, one
difference at a time, starting from the reconstruction `final.yaml` used to be (the Udacity template's
pipeline and a guessed network: `base`), up to what the original's own code does (`found`, today's
`final.yaml`).

Each run: the same seeded 1000 images of `training/`, 300 of `test/`, batch 10, one thread. Prints,
after each epoch, the training MSE and the test MSE in the run's own target units (`(keypoint - 100) / 50`
on its 224-pixel input: the template's frame for most variants, the squashed whole image for `squash`,
`found`), the test NME (unit-free, so it compares across frames), and at the end the mean-shape guess
for scale: a network that has learned nothing about where the face is scores about that.

    python benchmarks/seed_ablation.py --data-dir data --variant base --epochs 3
    python benchmarks/seed_ablation.py --data-dir data --variant found --epochs 3

Variants:
  base      the earlier reconstruction of the final run: the template's frame (shorter side to 250, random
            224 crop, grey, /255), network `seed-final` (3x3 convs, no BatchNorm, dropout 0.3 before a
            512-136 head), Adam 3e-4 with weight decay 1e-4
  template  the template's pipeline: matplotlib-2-style uint8 read, alpha dropped, cv2.resize by the
            shorter side, numpy random crop, cv2 grey, /255 (its test MSE is on random crops, as the
            template's test loader did, so compare its train column)
  square    the template's pipeline with a square 250x250 resize instead (an easier task: smaller crop offsets)
  png-float the pixel scale a newer matplotlib gives for these PNG files (0..1, then /255 again)
  lr1e-3, lr1e-4   other learning rates
  dropout0  no dropout
  xavier, kaiming  other weight initialisations (PyTorch's default is kaiming-uniform with a=sqrt(5))
  centred   pixels centred and scaled: (p / 255 - 0.5) / 0.25 instead of p / 255
  batchnorm a BatchNorm after every conv of `seed-final`
  wd0       no weight decay
  squash    the original code's pipeline: the whole image resized to 224 x 224, no crop (`framing: squash`)
  bn-net    the original code's network (`seed-final-bn`: 5x5 convs with BatchNorm, dropout 0.4, 1024-136 head)
  optimiser the original code's optimiser settings: Adam 1e-4, weight decay 1e-5
  found     all three: the original's code, as `final.yaml` now configures it
  found-png-float  `found` with pixels / 255 twice: what the original's loader gave if, like the
            template's, it read these PNG files with a newer matplotlib's `imread` (floats in 0..1)
  found-cv2 `found` with the template's own loader in place of fkd's crop: uint8 read, alpha dropped,
            `cv2.resize` to 224 x 224 (bilinear without antialiasing, where fkd uses Pillow's antialiased
            filter), cv2 grey, / 255
  found-bn-batch  `found`, its test MSE taken with BatchNorm on each test batch's own statistics (the
            network left in training mode, dropout off): what a loop without `net.eval()` reports
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bn_test_loop import batch_statistics_copy

VARIANTS = ("base", "template", "square", "png-float", "lr1e-3", "lr1e-4", "dropout0", "xavier", "kaiming", "centred",
            "batchnorm", "wd0", "squash", "bn-net", "optimiser", "found", "found-png-float", "found-cv2",
            "found-bn-batch")
# the earlier reconstruction of the final run, on top of today's final.yaml (the original's own code)
RECONSTRUCTION = {"framing": "frame", "frame_resize": 250, "model": "seed-final", "dropout": 0.3, "lr": 3e-4,
                  "weight_decay": 1e-4}


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


def squash_sample(image, points):
    """The template's loader with the original's `Rescale((224, 224))`: cv2.resize of the whole image,
    cv2 grey, / 255, keypoints (k - 100) / 50 in the squashed frame."""
    import cv2
    import torch

    h, w = image.shape[:2]
    image = cv2.resize(image, (224, 224))
    points = points * [224 / w, 224 / h]
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
    from fkd_cli.framing import Preprocess, crop_points_to_image, outputs_to_crop_points
    from fkd_cli.metrics import per_image_nme
    from fkd_cli.models import build_model, model_kwargs

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    variant = args.variant
    train = read_split(args.data_dir, "training")
    order = torch.randperm(len(train.paths), generator=torch.Generator().manual_seed(0))[: args.images].tolist()
    train = train.subset(sorted(order), "train")
    test = read_split(args.data_dir, "test").subset(list(range(args.test_images)), "test")

    changes = {"png-float": {"std": [255.0]}, "dropout0": {"dropout": 0.0},
               "centred": {"mean": [0.5], "std": [0.25]}, "squash": {"framing": "squash"},
               "bn-net": {"model": "seed-final-bn", "dropout": 0.4}, "optimiser": {"lr": 1e-4, "weight_decay": 1e-5}}
    if variant.startswith("found"):
        cfg = resolve_config("final.yaml", {"std": [255.0]} if variant == "found-png-float" else {})
    else:
        cfg = resolve_config("final.yaml", {**RECONSTRUCTION, **changes.get(variant, {})})
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

    def read(path):  # matplotlib 2's imread on these files: PIL, uint8, alpha dropped (by the RGB conversion)
        return np.asarray(Image.open(path).convert("RGB"))

    if variant == "found-cv2":
        train_images, test_images = [read(p) for p in train.paths], [read(p) for p in test.paths]
        train_item = lambda i: squash_sample(train_images[i], train.keypoints[i].double().numpy())
        test_item = lambda i: squash_sample(test_images[i], test.keypoints[i].double().numpy())
        test_boxes = np.array([(0, 0, img.shape[1], img.shape[0]) for img in test_images])
    elif variant in ("template", "square"):
        rng = np.random.default_rng(0)
        train_images, test_images = [read(p) for p in train.paths], [read(p) for p in test.paths]
        train_item = lambda i: template_sample(train_images[i], train.keypoints[i].double().numpy(), rng, variant == "square")
        test_item = lambda i: template_sample(test_images[i], test.keypoints[i].double().numpy(), rng, variant == "square")
    else:
        train_set = KeypointDataset(ImageCache(train.paths).load_all(), train.keypoints, pp, cfg, train=True)
        test_set = KeypointDataset(ImageCache(test.paths).load_all(), test.keypoints, pp, cfg, train=False)
        train_item, test_item = (lambda i: train_set[i][:2]), (lambda i: test_set[i][:2])
        # each test image's box, to map the predictions back to image pixels for the NME
        test_boxes = np.array([pp.framer.truth_box(test_set.images[i].shape[1], test_set.images[i].shape[0], None)
                               for i in range(len(test.paths))])

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
        # found-bn-batch: the test batches through a copy whose BatchNorm uses their own statistics
        probe = batch_statistics_copy(model) if variant == "found-bn-batch" else model
        with torch.no_grad():
            x, y = (torch.stack(t) for t in zip(*[test_item(i) for i in range(len(test.paths))]))
            out = torch.cat([probe(x[start:start + batch]) for start in range(0, len(x), batch)])
            test_mse = float(torch.nn.functional.mse_loss(out, y))
        nme = "-"
        if variant not in ("template", "square"):  # back to image pixels through fkd's one mapping
            points = crop_points_to_image(outputs_to_crop_points(out.numpy(), pp), test_boxes, pp.input_size)
            nme = f"{100 * float(per_image_nme(torch.from_numpy(points), test.keypoints, pp.norm_points).mean()):.1f}%"
        print(f"{variant} epoch {epoch + 1}: train MSE {total / count:.4f}  test MSE {test_mse:.4f}  test NME {nme}  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    # after training, so that the random draws of the runs above do not depend on it
    targets = torch.stack([train_item(i)[1] for i in range(len(train.paths))])
    test_targets = torch.stack([test_item(i)[1] for i in range(len(test.paths))])
    mean = targets.mean(0)
    print(f"{variant}: the mean-shape guess scores train MSE {((targets - mean) ** 2).mean():.4f}, "
          f"test MSE {((test_targets - mean) ** 2).mean():.4f}")


if __name__ == "__main__":
    main()
