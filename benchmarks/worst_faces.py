"""The ten worst faces of a model on a split, through `fkd evaluate`'s path (detector boxes, misses
counted): a table (with how the crop box the prediction came from compares with the box around the
annotated landmarks: its side over theirs, its centre's offset in their sides), and a picture of each
face's annotated shape (green) against the prediction (red), each point joined to its prediction, with
the image's NME and worst region.

The committed picture (docs/worst-faces.png) draws shapes only: the data's images must not be copied
into the repository. `--pixels FILE` also draws them over the photos, for looking at locally.

    python benchmarks/worst_faces.py --data-dir data [--model runs/x/model.pth] [--out docs/worst-faces.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

WORST = 10


def draw(result, keypoints, images, order, out: Path, pixels: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fkd_cli.landmarks import contour_edges

    edges = contour_edges(keypoints.shape[1])
    fig, axes = plt.subplots(2, 5, figsize=(15, 6.6))
    for ax, i in zip(axes.flat, order):
        gt, pred = keypoints[i].numpy(), result.predictions[i].numpy()
        if pixels:
            ax.imshow(images[i])
        for a, b in edges:
            ax.plot(gt[[a, b], 0], gt[[a, b], 1], color="tab:green", lw=1.2)
            ax.plot(pred[[a, b], 0], pred[[a, b], 1], color="tab:red", lw=1.2)
        for (gx, gy), (px, py) in zip(gt, pred):
            ax.plot([gx, px], [gy, py], color="0.6", lw=0.5)
        # frame the annotated face with a margin, image y pointing down
        lo, hi = gt.min(0), gt.max(0)
        side = 1.5 * max(hi - lo)
        centre = (lo + hi) / 2
        ax.set_xlim(centre[0] - side / 2, centre[0] + side / 2)
        ax.set_ylim(centre[1] + side / 2, centre[1] - side / 2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        regions = {name: float(values[i]) for name, values in (result.region_nme or {}).items()}
        worst = max(regions, key=regions.get) if regions else ""
        missed = " MISSED" if bool(result.missed_mask[i]) else ""
        name = result.names[i] if result.names else str(i)
        ax.set_title(f"{name}\nNME {100 * float(result.nme[i]):.1f}%{missed}, worst: {worst} "
                     f"{100 * regions.get(worst, float('nan')):.1f}%", fontsize=9)
    fig.suptitle("ten worst faces: annotation (green), prediction (red)", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def box_against_truth(box, truth) -> tuple[float, float]:
    """A square crop box (left, top, side) against the landmarks' own: side ratio, centre offset in truth sides."""
    (left, top, side), (t_left, t_top, t_side) = box, truth
    dx = (left + side / 2) - (t_left + t_side / 2)
    dy = (top + side / 2) - (t_top + t_side / 2)
    return side / t_side, (dx * dx + dy * dy) ** 0.5 / t_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=Path("docs/worst-faces.png"))
    parser.add_argument("--pixels", type=Path, default=None, help="also draw over the photos into this file (keep it out of the repository)")
    args = parser.parse_args()

    from fkd_cli.data import ImageCache, load_split
    from fkd_cli.evaluate import evaluate_model
    from fkd_cli.inference import load_predictor

    report, result = evaluate_model(args.model, args.data_dir, args.split)
    split = load_split(args.data_dir, args.split)
    framer = load_predictor(args.model).framer
    images = ImageCache(split.paths)
    order = result.nme.argsort(descending=True)[:WORST].tolist()
    print(f"{report['model']} on {args.data_dir}/{args.split}: NME {100 * report['nme']:.2f}% over {result.count} images")
    print("| rank | image | NME % | missed | crop / truth side | centre offset % | " + " | ".join(f"{r} %" for r in (result.region_nme or {})) + " |")
    print("| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in (result.region_nme or {})) + " |")
    for rank, i in enumerate(order, 1):
        regions = " | ".join(f"{100 * float(v[i]):.1f}" for v in (result.region_nme or {}).values())
        height, width = images[i].shape[:2]
        side, offset = box_against_truth(result.boxes[i], framer.truth_box(width, height, split.keypoints[i]))
        print(f"| {rank} | {result.names[i]} | {100 * float(result.nme[i]):.2f} | {'yes' if result.missed_mask[i] else 'no'} "
              f"| {side:.2f} | {100 * offset:.1f} | {regions} |")
    draw(result, split.keypoints, images, order, args.out, pixels=False)
    print(f"wrote {args.out}")
    if args.pixels:
        draw(result, split.keypoints, images, order, args.pixels, pixels=True)
        print(f"wrote {args.pixels}")


if __name__ == "__main__":
    main()
