"""`fkd predict` as a library: run the predictor over image and video files, write drawings,
aligned crops, JSON, JSON Lines and CSV."""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .images import image_format, read_image
from .errors import FkdError
from .inference import Predictor
from .inputs import collect_inputs, is_video  # noqa: F401  (collect_inputs: part of this module's API)
from .outputs import write_text

POSE_KEYS = ("yaw", "pitch", "roll")


@dataclass
class PredictOptions:
    out_dir: Path | None = None  # annotated images and videos (None: none drawn)
    crops_dir: Path | None = None  # aligned face crops of still images (None: none)
    crop_size: int = 112
    tracking: object = None  # video.TrackerOptions (None: the defaults)
    # still images worked on at once (decode, detection, network; results written in order). Worth it
    # with one runtime thread a worker: the networks are too small to keep two threads busy on one image
    workers: int = 1


def _output_name(path: Path, used: set[str], suffix: str) -> str:
    """Output names that never collide, even for same-named files from different folders."""
    name = f"{path.stem}{suffix}"
    n = 2
    while name in used:
        name = f"{path.stem}_{n}{suffix}"
        n += 1
    used.add(name)
    return name


def _image_suffix(path: Path) -> str:
    """A JPEG (by content, not name) stays a JPEG, anything else becomes a PNG (lossless, opens everywhere)."""
    return ".jpg" if image_format(path) == "JPEG" else ".png"


class Run:
    """One `fkd predict` over many files: results so far, and the outputs that take them as they come."""

    def __init__(self, predictor: Predictor, options: PredictOptions, on_line=None, on_output_error=None):
        self.predictor, self.options = predictor, options
        self.on_line, self.on_output_error = on_line, on_output_error  # JSON Lines, failed drawing
        self.images: list[dict] = []
        self.videos: list[dict] = []
        self.video_rows: list[list] = []  # CSV rows of video frames
        self.used: set[str] = set()

    def _drawing_failed(self, exc: OSError, done: int, total: int) -> None:
        if self.on_output_error is not None:
            self.on_output_error(f"--out {self.options.out_dir}: drawing stopped after {done} of {total} files "
                                 f"({exc.strerror or exc}); the other outputs have every result")
        self.options.out_dir = None

    def image(self, path: Path, done: int, total: int, found: tuple | None = None) -> None:
        """Write one still image's results; `found` is its `find_faces` result if a worker made it."""
        from .render import draw_faces

        image, faces, error, seconds = found or find_faces(self.predictor, path)
        started = time.perf_counter()
        result = self.predictor.result(str(path), image, faces, error)
        if self.options.out_dir is not None and image is not None:
            try:
                target = self.options.out_dir / _output_name(path, self.used, _image_suffix(path))
                draw_faces(image, result.faces, target)
                result.annotated = str(target)
            except OSError as exc:
                self._drawing_failed(exc, done - 1, total)
        self._save_crops(path, result)
        entry = result.to_dict()
        if self.on_line is not None:
            self.on_line({"path": entry["path"], "frame": None, "time": None, "faces": entry["faces"], "error": entry["error"]})
        entry["seconds"] = round(seconds + time.perf_counter() - started, 4)
        self.images.append(entry)

    def _save_crops(self, path: Path, result) -> None:
        from PIL import Image

        if self.options.crops_dir is None or result.image is None or self.predictor.num_keypoints != 68:
            return
        for i in range(len(result.faces)):
            name = _output_name(path, self.used, f"_face{i}.png")
            Image.fromarray(result.aligned(i, self.options.crop_size)).save(self.options.crops_dir / name)

    def video(self, source: Path | int, progress=None) -> bool:
        """Returns False when the video was interrupted (Ctrl-C)."""
        from .video import TrackerOptions, predict_video

        name = f"camera{source}" if isinstance(source, int) else str(source)
        annotated = None
        if self.options.out_dir is not None:
            stem = Path(name if isinstance(source, int) else source)
            annotated = self.options.out_dir / _output_name(stem, self.used, ".webm")

        def on_frame(index: int, t: float, found) -> None:
            faces = []
            for n, (face, track) in enumerate(zip(found.faces, found.tracks)):
                entry = {"track": track, **face.to_dict()}
                faces.append(entry)
                self.video_rows.append(_csv_row(name, entry, n, frame=index, time=round(t, 4), track=track))
            if self.on_line is not None:
                self.on_line({"path": name, "frame": index, "time": round(t, 4), "faces": faces})

        try:
            summary = predict_video(self.predictor, source, annotated, self.options.tracking or TrackerOptions(),
                                    on_frame, progress)
        except FkdError as exc:
            summary = {"path": name, "frames": 0, "error": str(exc), "interrupted": False, "annotated": None}
        if not summary["frames"]:  # nothing was drawn: name no annotated copy
            summary["annotated"] = None
        self.videos.append(summary)
        return not summary.get("interrupted")

    def report(self, interrupted: bool) -> dict:
        p = self.predictor
        report = {
            "model": p.source,
            "detector": p.detector.name,
            "coordinates": "pixels of the upright image (EXIF orientation applied), origin top-left",
            "regions": p.regions,
            "images": self.images,
            "interrupted": interrupted,
            "num_keypoints": p.num_keypoints,
        }
        if self.videos:
            report["videos"] = self.videos
            report["video_rows"] = self.video_rows
        return report


def find_faces(predictor: Predictor, path: Path) -> tuple:
    """The costly part of one still image: decode, detection, network. Safe in a worker thread (the
    predictor is only read; ONNX Runtime and PyTorch release the GIL). Returns (image, faces, error,
    seconds)."""
    started = time.perf_counter()
    try:
        image = read_image(path)
        return image, predictor.predict_faces(image), None, time.perf_counter() - started
    except FkdError as exc:
        return None, [], str(exc), time.perf_counter() - started


def images_in_parallel(paths: list[Path], sources: list[int] | None = None) -> bool:
    """Whether a run may work on several still images at once: more than one file, and no video or
    camera (a stream runs its own threads, and its frames must follow one another)."""
    return len(paths) > 1 and not sources and not any(is_video(p) for p in paths)


def predict_files(predictor: Predictor, paths: list[Path], options: PredictOptions | None = None, progress=None,
                  on_output_error=None, on_line=None, video_progress=None, sources: list[int] | None = None) -> dict:
    """Predict every image and video file (and camera in `sources`); a file that fails gets its
    `error` and the rest go on.

    Annotated copies go to `options.out_dir` (None: none). If writing one fails (disk full), drawing
    stops, `on_output_error(message)` is told, and prediction goes on, so the other outputs still get
    every result. `on_line(dict)` receives each image's and each video frame's JSON Lines record as it
    is done. Ctrl-C stops after the current image (or ends the current stream cleanly), with
    `interrupted` set in the report.

    With `options.workers` > 1, that many still images are decoded and searched at once, up to two a
    worker ahead of the one being written; outputs keep the order of `paths`. Runs with a video or
    camera work on one file at a time (a stream has its own threads).
    """
    options = options or PredictOptions()
    run = Run(predictor, options, on_line, on_output_error)
    interrupted = False
    parallel = options.workers > 1 and images_in_parallel(paths, sources)
    pool = ThreadPoolExecutor(options.workers, thread_name_prefix="fkd-image") if parallel else None
    ahead: dict[int, object] = {}
    try:
        for done, path in enumerate(paths, start=1):
            if is_video(path):
                interrupted = not run.video(path, video_progress)
            elif pool is not None:
                for i in range(done - 1, min(len(paths), done - 1 + 2 * options.workers)):
                    if i not in ahead:
                        ahead[i] = pool.submit(find_faces, predictor, paths[i])
                run.image(path, done, len(paths), ahead.pop(done - 1).result())
            else:
                run.image(path, done, len(paths))
            if progress is not None:
                progress(done)
            if interrupted:
                break
        for camera in sources or []:
            if interrupted or not run.video(camera, video_progress):
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True  # keep what is finished: the caller still writes it
    finally:
        if pool is not None:  # images not yet started are dropped; those under way finish in the background
            pool.shutdown(wait=False, cancel_futures=True)
    return run.report(interrupted)


def json_report(report: dict) -> dict:
    """The documented JSON schema: timings and run state are for the table only."""
    images = [{k: v for k, v in item.items() if k != "seconds"} for item in report["images"]]
    out = {"model": report["model"], "detector": report["detector"], "coordinates": report["coordinates"]}
    if report["regions"]:
        out["regions"] = report["regions"]
    out["images"] = images
    if report.get("videos"):
        out["videos"] = [{k: v for k, v in item.items() if k not in ("interrupted", "seconds")} for item in report["videos"]]
    return out


def _csv_row(path, face: dict, index: int, **video) -> list:
    flat = [v for point in face["keypoints"] for v in point]
    pose = face.get("pose") or {}
    lead = [path] + ([video["frame"], video["time"], video["track"]] if video else [])
    return [*lead, index, *face["box"], *flat, *(pose.get(key, "") for key in POSE_KEYS)]


def csv_rows(report: dict) -> tuple[list[str], list[list]]:
    """One row a face: still images, then video frames (with frame, time and track columns)."""
    with_video = bool(report.get("videos"))
    rows = []
    for item in report["images"]:
        for index, face in enumerate(item["faces"]):
            row = _csv_row(item["path"], face, index)
            rows.append(row[:1] + ["", "", ""] + row[1:] if with_video else row)
    rows += report.get("video_rows", [])
    k = report.get("num_keypoints", 68)
    header = ["path"] + (["frame", "time", "track"] if with_video else []) + ["face", "box_x0", "box_y0", "box_x1", "box_y1"]
    header += [f"{axis}{i}" for i in range(k) for axis in ("x", "y")] + list(POSE_KEYS)
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


def json_line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"
