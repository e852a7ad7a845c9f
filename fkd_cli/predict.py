"""`fkd predict` as a library: expand inputs, run the predictor per file, write drawings, JSON and CSV."""

from __future__ import annotations

import csv
import glob
import io
import time
from pathlib import Path

from .data import read_image
from .errors import FkdError
from .inference import Predictor, image_entry
from .outputs import write_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


def collect_inputs(inputs: list[str], recursive: bool = False) -> list[Path]:
    """Files as given (any suffix: a bad one is reported per file), image files inside folders,
    and glob patterns (expanded here too, for shells that pass them quoted)."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            paths += sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            paths.append(path)
        elif glob.has_magic(raw):
            matches = sorted(Path(p) for p in glob.glob(raw, recursive=recursive) if Path(p).is_file())
            if not matches:
                raise FkdError(f"{raw}: the pattern matches no file")
            paths += matches
        else:
            raise FkdError(f"{raw}: no such file or folder")
    if not paths:
        raise FkdError(f"no image files found in {', '.join(inputs)}" + ("" if recursive else " (use --recursive for sub-folders)"))
    seen, unique = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _annotated_name(path: Path, used: set[str]) -> str:
    """Output names that never collide, even for same-named files from different folders."""
    name = f"{path.stem}.png"
    n = 2
    while name in used:
        name = f"{path.stem}_{n}.png"
        n += 1
    used.add(name)
    return name


def predict_files(predictor: Predictor, paths: list[Path], out_dir: Path | None, progress=None,
                  on_output_error=None) -> dict:
    """Predict every file; a file that fails gets its `error` and the rest go on.

    `out_dir` (an existing folder) gets the annotated images. If writing one fails (disk full), the
    drawing stops, `on_output_error(message)` is told, and prediction goes on, so the other outputs
    still get every result. Ctrl-C stops after the current file with `interrupted` set in the report.
    """
    from .render import draw_faces

    images = []
    used: set[str] = set()
    interrupted = False
    try:
        for done, path in enumerate(paths, start=1):
            started = time.perf_counter()
            try:
                image = read_image(path)
                faces = predictor.predict_faces(image)
                entry = image_entry(str(path), image, faces, None)
            except FkdError as exc:
                image, entry = None, image_entry(str(path), None, [], str(exc))
            if out_dir is not None and image is not None:
                try:
                    draw_faces(image, faces, out_dir / _annotated_name(path, used))
                except OSError as exc:
                    if on_output_error is not None:
                        on_output_error(f"--out {out_dir}: annotated images stopped after {len(used) - 1} of "
                                        f"{len(paths)} ({exc.strerror or exc}); the other outputs have every result")
                    out_dir = None
            entry["seconds"] = round(time.perf_counter() - started, 4)
            images.append(entry)
            if progress is not None:
                progress(done)
    except KeyboardInterrupt:
        interrupted = True  # keep what is finished: the caller still writes it
    return {
        "model": predictor.source,
        "detector": predictor.detector.name,
        "coordinates": "pixels of the upright image (EXIF orientation applied), origin top-left",
        "images": images,
        "interrupted": interrupted,
    }


def json_report(report: dict) -> dict:
    """The documented JSON schema: timings and run state are for the table only."""
    images = [{k: v for k, v in item.items() if k != "seconds"} for item in report["images"]]
    return {"model": report["model"], "detector": report["detector"], "coordinates": report["coordinates"],
            "images": images}


def csv_rows(report: dict) -> tuple[list[str], list[list]]:
    k = None
    rows = []
    for item in report["images"]:
        for index, face in enumerate(item["faces"]):
            k = len(face["keypoints"])
            flat = [v for point in face["keypoints"] for v in point]
            rows.append([item["path"], index, *face["box"], *flat])
    k = k or 68
    header = ["path", "face", "box_x0", "box_y0", "box_x1", "box_y1"]
    header += [f"{axis}{i}" for i in range(k) for axis in ("x", "y")]
    return header, rows


def write_csv(report: dict, path: Path) -> None:
    header, rows = csv_rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
