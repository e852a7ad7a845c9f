"""Video through the real path (`fkd_cli.video.predict_video`: decode, track, draw, encode) on clips
built from dev `test/` frames, with known ground truth on every frame.

Each clip is 640x480 at 30 frames/s: 1 to 3 faces (cut from dev test frames around their landmarks,
120-200 px) move across the canvas, grow and shrink, and turn in the image plane; a face may join
half-way. A further clip holds one still face with a little pixel noise (sigma 3 grey levels) on each
frame. Reported:

- frames/s of the whole path, with and without writing the annotated video (target: >= 30);
- NME per frame against the ground truth, next to the still-image NME of the same faces (every 10th
  frame through `predict()`: detector on every frame, no tracking) (target: within 0.3 points);
- jitter on the still face: mean point motion between consecutive frames / outer-eye-corner distance,
  with and without smoothing (target: smoothing at least halves it);
- track-id switches (target: none, the clips have no occlusion).

    python benchmarks/video.py --data-dir data
    python benchmarks/video.py --data-dir data --recrop-tta    # the accurate mode
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = (640, 480)
FPS = 30.0


def face_patches(data_dir: Path, count: int, seed: int):
    """(patch RGB array, its landmarks in patch pixels) for `count` dev test faces."""
    from PIL import Image

    from fkd_cli.data import read_split

    split = read_split(data_dir, "test")
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(split.paths), count, replace=False):
        image = Image.open(split.paths[i]).convert("RGB")
        points = split.keypoints[i].numpy()
        lo, hi = points.min(0), points.max(0)
        centre, side = (lo + hi) / 2, 1.7 * float((hi - lo).max())
        box = (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)
        patch = image.crop(tuple(int(round(v)) for v in box))
        out.append((np.asarray(patch), points - np.array([round(box[0]), round(box[1])])))
    return out


def background(rng) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    base = rng.uniform(40, 160, 3)
    shade = (xx / SIZE[0] * rng.uniform(-40, 40) + yy / SIZE[1] * rng.uniform(-40, 40))[..., None]
    return np.clip(base + shade + rng.normal(0, 4, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)


def place(canvas: np.ndarray, patch: np.ndarray, points: np.ndarray, centre, side: float, angle: float):
    """Paste `patch` scaled to `side` px, turned by `angle` degrees, centred at `centre`; its landmarks."""
    import cv2

    h, w = patch.shape[:2]
    scale = side / w
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += np.array(centre) - np.array([w / 2, h / 2])
    warped = cv2.warpAffine(patch, matrix, SIZE, flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), matrix, SIZE, flags=cv2.INTER_NEAREST, borderValue=0)
    canvas[mask > 0] = warped[mask > 0]
    return points @ matrix[:, :2].T + matrix[:, 2]


def moving_clip(patches, frames: int, rng, late: int | None):
    """Frames and per-frame ground truth {face index: (68, 2)} for faces moving, scaling and turning.

    Each face keeps to its own vertical strip of the canvas, so faces never cover each other (the
    clips have no occlusion) and every annotated point stays visible."""
    n = len(patches)
    strip = SIZE[0] / n
    sides = rng.uniform(120, 200, n) * (0.65 if n == 3 else 1.0)
    phases = rng.uniform(0, 2 * math.pi, n)
    speeds = rng.uniform(40, 120, (n, 2)) * rng.choice([-1, 1], (n, 2))  # px/s
    bg = background(rng)
    clip, truth = [], []
    for f in range(frames):
        t = f / FPS
        canvas, gt = bg.copy(), {}
        for k, (patch, points) in enumerate(patches):
            if late is not None and k == n - 1 and f < late:
                continue
            side = sides[k] * (1 + 0.2 * math.sin(2 * math.pi * 0.4 * t + phases[k]))
            reach = 0.8 * sides[k] * 1.2  # half the turned (x1.3), grown (x1.2) patch
            lows = (k * strip + reach, reach)
            highs = ((k + 1) * strip - reach, SIZE[1] - reach)
            pos = []
            for axis in (0, 1):  # bounce between the strip's walls
                span = highs[axis] - lows[axis]
                if span <= 0:
                    pos.append((lows[axis] + highs[axis]) / 2)
                    continue
                travel = (phases[k] * 50 + speeds[k, axis] * t) % (2 * span)
                pos.append(lows[axis] + span - abs(travel - span))
            angle = 20 * math.sin(2 * math.pi * 0.3 * t + phases[k])
            gt[k] = place(canvas, patch, points, pos, side, angle)
        clip.append(canvas)
        truth.append(gt)
    return clip, truth


def still_clip(patch, points, frames: int, rng):
    bg = background(rng)
    canvas = bg.copy()
    gt = place(canvas, patch, points, (SIZE[0] / 2, SIZE[1] / 2), 180, 0)
    clip = [np.clip(canvas + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8) for _ in range(frames)]
    return clip, [{0: gt}] * frames


def write_clip(path: Path, frames) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()


def nme(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45]))


def run(predictor, path: Path, truth, options, annotated: Path | None):
    """Per frame {gt face: (track, keypoints)}, by nearest centre; and the seconds the path took."""
    from fkd_cli.video import predict_video

    frames = []

    def on_frame(index, t, found):
        assigned = {}
        for face, track in zip(found.faces, found.tracks):
            centre = np.asarray(face.keypoints).mean(0)
            k = min(truth[index], key=lambda j: np.linalg.norm(truth[index][j].mean(0) - centre), default=None)
            if k is not None and np.linalg.norm(truth[index][k].mean(0) - centre) < 60:
                assigned[k] = (track, np.asarray(face.keypoints))
        frames.append(assigned)

    started = time.perf_counter()
    predict_video(predictor, str(path), annotated, options, on_frame)
    return frames, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recrop-tta", action="store_true", help="the accurate mode, as fkd predict --recrop-tta")
    args = parser.parse_args()

    from PIL import Image

    from fkd_cli import load_model
    from fkd_cli.video import TrackerOptions

    predictor = load_model(args.model, device="cpu").configured(recrop_tta=args.recrop_tta or None)
    rng = np.random.default_rng(args.seed)
    options = TrackerOptions()
    rows, switches, missing, video_nme, still_nme, rates, rates_drawn = [], 0, 0, [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.clips):
            n = 1 + c % 3
            patches = face_patches(args.data_dir, n, args.seed * 100 + c)
            clip, truth = moving_clip(patches, args.frames, rng, late=args.frames // 2 if n > 1 and c % 2 else None)
            path = Path(tmp) / f"clip{c}.mp4"
            write_clip(path, clip)
            frames, seconds = run(predictor, path, truth, options, None)
            _, seconds_drawn = run(predictor, path, truth, options, Path(tmp) / f"clip{c}.webm")
            rates.append(len(clip) / seconds)
            rates_drawn.append(len(clip) / seconds_drawn)
            ids: dict[int, list] = {}
            for index, assigned in enumerate(frames):
                for k, gt in truth[index].items():
                    if k not in assigned:
                        missing += 1
                        continue
                    track, points = assigned[k]
                    ids.setdefault(k, []).append(track)
                    video_nme.append(nme(points, gt))
            switches += sum(sum(1 for a, b in zip(seq, seq[1:]) if a != b) for seq in ids.values())
            for index in range(0, len(clip), 10):  # the still-image path on the same faces
                result = predictor.predict(Image.fromarray(clip[index]))
                for k, gt in truth[index].items():
                    if len(result):
                        best = min(range(len(result)), key=lambda i: np.linalg.norm(result.keypoints[i].mean(0) - gt.mean(0)))
                        still_nme.append(nme(result.keypoints[best], gt))
            rows.append((c, n, len(clip), rates[-1], rates_drawn[-1]))
        patch, points = face_patches(args.data_dir, 1, 999)[0]
        clip, truth = still_clip(patch, points, args.frames, rng)
        path = Path(tmp) / "still.mp4"
        write_clip(path, clip)
        jitter = {}
        for smooth in (False, True):
            frames, _ = run(predictor, path, truth, TrackerOptions(smooth=smooth), None)
            gt = truth[0][0]
            iod = np.linalg.norm(gt[36] - gt[45])
            track = [f[0][1] for f in frames if 0 in f]
            jitter[smooth] = float(np.mean([np.linalg.norm(b - a, axis=1).mean() / iod for a, b in zip(track, track[1:])]))

    print(f"model: {predictor.source}{' (re-crop TTA)' if predictor.pp.recrop_tta else ''}; {args.clips} clips of {args.frames} frames at {SIZE[0]}x{SIZE[1]}, "
          f"detector every {options.detect_every} frames, smoothing on")
    print(f"{'clip':>4} {'faces':>5} {'frames':>6} {'frames/s':>9} {'frames/s (drawn + encoded)':>27}")
    for c, n, f, r, rd in rows:
        print(f"{c:>4} {n:>5} {f:>6} {r:>9.1f} {rd:>27.1f}")
    print(f"all: {np.mean(rates):.1f} frames/s tracking, {np.mean(rates_drawn):.1f} with the annotated video written")
    print(f"NME per frame (tracked video): {100 * np.mean(video_nme):.2f}% over {len(video_nme)} face-frames; "
          f"still-image path on the same faces: {100 * np.mean(still_nme):.2f}% ({len(still_nme)}); "
          f"face-frames without a face: {missing}")
    print(f"jitter on a still face (point motion a frame / eye-corner distance): {100 * jitter[False]:.3f}% raw, "
          f"{100 * jitter[True]:.3f}% smoothed ({jitter[False] / max(1e-12, jitter[True]):.1f}x less)")
    print(f"track-id switches: {switches}")


if __name__ == "__main__":
    main()
