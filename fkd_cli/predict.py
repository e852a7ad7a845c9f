"""`fkd predict` as a library: expand inputs, run the predictor per file, write drawings, JSON and CSV."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from .data import image_format, read_image
from .errors import FkdError
from .inputs import collect_inputs  # noqa: F401  (part of this module's API)
from .inference import Predictor
from .outputs import write_text

def _annotated_name(path: Path, used: set[str]) -> str:
    """Output names that never collide, even for same-named files from different folders; a JPEG
    (by content, not name) stays a JPEG, anything else becomes a PNG (lossless, opens everywhere)."""
    suffix = ".jpg" if image_format(path) == "JPEG" else ".png"
    name = f"{path.stem}{suffix}"
    n = 2
    while name in used:
        name = f"{path.stem}_{n}{suffix}"
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
                result = predictor.result(str(path), image, predictor.predict_faces(image))
            except FkdError as exc:
                image, result = None, predictor.result(str(path), None, [], str(exc))
            if out_dir is not None and image is not None:
                try:
                    target = out_dir / _annotated_name(path, used)
                    draw_faces(image, result.faces, target)
                    result.annotated = str(target)
                except OSError as exc:
                    if on_output_error is not None:
                        on_output_error(f"--out {out_dir}: annotated images stopped after {len(used) - 1} of "
                                        f"{len(paths)} ({exc.strerror or exc}); the other outputs have every result")
                    out_dir = None
            entry = result.to_dict()
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
        "regions": predictor.regions,
        "images": images,
        "interrupted": interrupted,
    }


def json_report(report: dict) -> dict:
    """The documented JSON schema: timings and run state are for the table only."""
    images = [{k: v for k, v in item.items() if k != "seconds"} for item in report["images"]]
    out = {"model": report["model"], "detector": report["detector"], "coordinates": report["coordinates"]}
    if report["regions"]:
        out["regions"] = report["regions"]
    return {**out, "images": images}


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


def csv_text(report: dict) -> str:
    header, rows = csv_rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(report: dict, path: Path) -> None:
    write_text(path, csv_text(report))
