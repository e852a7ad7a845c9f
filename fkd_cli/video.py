"""Video and live streams on the one inference path: frames in (OpenCV), tracked faces out.

Tracking (as dlib users do it, without a second pipeline): the face detector runs every
`detect_every` frames, or at once when a track was lost; in between, each face's crop is cut from
its previous landmarks (the re-crop that still-image inference does), so a frame costs one network
call per face. A track ends when its landmark score says the crop no longer holds a face. Track ids
stay while a face is visible. Keypoints are smoothed with a One Euro filter (Casiez et al., 2012):
heavy smoothing when a face is still (no shimmer), light when it moves fast (no lag).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Config
from .errors import FkdError
from .framing import landmark_box
from .results import FaceResult

CODEC = ("VP80", ".webm")  # VP8 in WebM: browsers and common players open it, and OpenCV's wheels write it
DEFAULT_FPS = 30.0  # when a file or camera does not say


# ---- frames in and out --------------------------------------------------------------------------


class VideoReader:
    """Frames of a video file, or of camera N, as upright uint8 RGB arrays (H, W, 3)."""

    def __init__(self, source: str | int):
        import cv2

        self._cv2 = cv2
        self.source, self.is_camera = source, isinstance(source, int)
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            raise FkdError(f"camera {source}: not found or busy (try another --source)" if self.is_camera
                           else f"{source}: not a readable video (unknown format, or damaged)")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.is_camera else 0
        self.frame_count = count if count > 0 else None
        self.frames_read = 0

    def __iter__(self):
        started = time.monotonic()
        while True:
            ok, frame = self.capture.read()
            if not ok:
                break
            rgb = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
            index = self.frames_read
            self.frames_read += 1
            yield index, (time.monotonic() - started if self.is_camera else index / self.fps), rgb

    @property
    def truncated(self) -> bool:
        """A file that ended well before the frame count its header gives (a cut download, a crash)."""
        return self.frame_count is not None and self.frames_read < 0.98 * self.frame_count - 1

    def close(self) -> None:
        self.capture.release()


@contextlib.contextmanager
def _native_stderr_silenced():
    """Mute what native code prints on file descriptor 2 for a moment (Python's own errors still show)."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoWriter:
    """An annotated copy: same size, frame rate and frame count as the input, VP8 in WebM. Encoding
    runs in a thread of its own (OpenCV releases the GIL while it encodes), on the second core."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import queue
        import threading

        import cv2

        self.path = Path(path)
        with _native_stderr_silenced():  # FFmpeg notes that WebM has no codec tags: noise, not a problem
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*CODEC[0]), fps, (width, height))
        if not self.writer.isOpened():
            raise FkdError(f"{self.path}: cannot write a {CODEC[0]} video here (OpenCV without that encoder?)")
        self.queue: queue.Queue = queue.Queue(maxsize=8)  # bounded: a slow disk slows us, never fills memory
        self.thread = threading.Thread(target=self._encode, daemon=True)
        self.thread.start()

    def _encode(self) -> None:
        while (frame := self.queue.get()) is not None:
            self.writer.write(frame)

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self.queue.put(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.writer.release()


# ---- smoothing ----------------------------------------------------------------------------------


class OneEuroFilter:
    """The One Euro filter on a face's keypoints (K, 2). Speeds are measured in face sizes a second,
    so the same two parameters suit any resolution: the cut-off frequency is `min_cutoff` Hz for a
    still face and grows by `beta` Hz per face size a second of movement."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        if self.value is None or self.time is None or t <= self.time:
            self.value, self.speed, self.time = points.copy(), np.zeros_like(points), t
            return points.copy()
        dt = t - self.time
        x0, y0, x1, y1 = landmark_box(points)
        size = max(1.0, x1 - x0, y1 - y0)
        speed = (points - self.value) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.speed = a_d * speed + (1 - a_d) * self.speed
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(self.speed, axis=-1, keepdims=True) / size
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))
        self.value = a * points + (1 - a) * self.value
        self.time = t
        return self.value.copy()


# ---- tracking -----------------------------------------------------------------------------------


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    points: np.ndarray  # raw keypoints of the last frame (the next crop is cut around them)
    box_in_landmarks: tuple  # the detector box relative to the landmark box (centre, size units)
    score: float | None
    filter: OneEuroFilter | None
    misses: int = 0  # detector rounds in a row that found no face here

    def box(self, points: np.ndarray) -> tuple:
        """The detector-style box, carried along with the landmarks between detections."""
        cx, cy, size = _landmark_frame(points)
        rx0, ry0, rx1, ry1 = self.box_in_landmarks
        return (cx + rx0 * size, cy + ry0 * size, cx + rx1 * size, cy + ry1 * size)


def _landmark_frame(points: np.ndarray) -> tuple[float, float, float]:
    """Centre and size of the landmark box: the frame a track's detector box is kept in."""
    x0, y0, x1, y1 = landmark_box(points)
    return (x0 + x1) / 2, (y0 + y1) / 2, max(1e-6, x1 - x0, y1 - y0)


def relative_box(box, points: np.ndarray) -> tuple:
    cx, cy, size = _landmark_frame(points)
    return ((box[0] - cx) / size, (box[1] - cy) / size, (box[2] - cx) / size, (box[3] - cy) / size)


@dataclass
class TrackerOptions:
    detect_every: int = 10  # frames between detector runs (and at once when a track is lost)
    smooth: bool = True
    # One Euro: Hz for a still face, and extra Hz per face size a second of movement (the config's
    # defaults, chosen on benchmarks/video.py clips: 4.7x less jitter on a still face, no added error)
    min_cutoff: float = Config.smooth_min_cutoff
    beta: float = Config.smooth_beta
    min_landmark_score: float = 0.1  # below this the crop is taken not to hold a face: the track ends
    match_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    max_misses: int = 2  # detector rounds a track may go unconfirmed


@dataclass
class FrameFaces:
    faces: list[FaceResult] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)
    detected: bool = False  # whether the detector ran on this frame


class FaceTracker:
    """Faces through the frames of one video, with stable ids (see the module docstring)."""

    def __init__(self, predictor, options: TrackerOptions | None = None):
        self.predictor, self.options = predictor, options or TrackerOptions()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frame = 0
        self.lost = False

    def _new_filter(self) -> OneEuroFilter | None:
        o = self.options
        return OneEuroFilter(o.min_cutoff, o.beta) if o.smooth else None

    def update(self, image: np.ndarray, t: float) -> FrameFaces:
        p, o = self.predictor, self.options
        detect = self.lost or not self.tracks or self.frame % o.detect_every == 0
        self.frame += 1
        boxes = [p.framer.recrop_box(track.points) for track in self.tracks]
        keep = [i for i, box in enumerate(boxes) if box is not None]
        self.tracks, boxes = [self.tracks[i] for i in keep], [boxes[i] for i in keep]
        new_detections = self._match_detections(image) if detect else []
        boxes += [p.initial_box(image, d) for d in new_detections]
        points, spread = p.keypoints_and_spread([image] * len(boxes), boxes)
        point_scores, face_scores = p.scores(points, spread)
        for d, n in zip(new_detections, range(len(self.tracks), len(boxes))):
            self.tracks.append(Track(self.next_id, points[n], relative_box(d.box, points[n]), d.score, self._new_filter()))
            self.next_id += 1
        return self._emit(image, t, points, point_scores, face_scores, detect)

    def _match_detections(self, image: np.ndarray) -> list:
        """Detections that start new tracks; the others confirm (and re-anchor) existing tracks."""
        p, o = self.predictor, self.options
        detections = p.select(p.detect(image))
        # greedy matching, best overlap first: each track and each detection used at most once
        pairs = sorted(((iou(d.box, track.box(track.points)), i, j) for i, track in enumerate(self.tracks)
                        for j, d in enumerate(detections)), reverse=True)
        confirmed, used = set(), set()
        for overlap, i, j in pairs:
            if overlap < o.match_iou or i in confirmed or j in used:
                continue
            confirmed.add(i)
            used.add(j)
            track = self.tracks[i]
            track.score, track.misses = detections[j].score, 0
            track.box_in_landmarks = relative_box(detections[j].box, track.points)
        for i, track in enumerate(self.tracks):
            if i not in confirmed:
                track.misses += 1
        self.lost = False
        return [d for j, d in enumerate(detections) if j not in used]

    def _emit(self, image, t, points, point_scores, face_scores, detected: bool) -> FrameFaces:
        o = self.options
        height, width = image.shape[:2]
        out, alive = FrameFaces(detected=detected), []
        for n, track in enumerate(self.tracks):
            score = None if face_scores is None else float(face_scores[n])
            gone = not bool(np.isfinite(points[n]).all()) or (score is not None and score < o.min_landmark_score)
            gone |= track.misses > o.max_misses or not _inside(points[n], width, height)
            if gone:
                self.lost = True  # look for faces again on the next frame
                continue
            track.points = points[n]
            shown = track.filter(points[n], t) if track.filter is not None else points[n]
            out.faces.append(FaceResult(track.box(shown), track.score, shown,
                                        None if point_scores is None else point_scores[n], score,
                                        self.predictor.pose(shown, image)))
            out.tracks.append(track.id)
            alive.append(track)
        self.tracks = alive
        return out


def _inside(points: np.ndarray, width: int, height: int) -> bool:
    """At least half of the landmark box lies inside the frame (a face leaving it is gone)."""
    x0, y0, x1, y1 = landmark_box(points)
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    ix = max(0.0, min(x1, width) - max(x0, 0.0))
    iy = max(0.0, min(y1, height) - max(y0, 0.0))
    return ix * iy / area >= 0.5


# ---- one video, start to finish ----------------------------------------------------------------


def predict_video(predictor, source: str | int, annotated: Path | None, options: TrackerOptions,
                  on_frame=None, progress=None) -> dict:
    """Track faces through a video file or camera; `on_frame(index, time, FrameFaces)` gets every
    frame as it is done, `annotated` (a .webm path) the drawn copy. Ctrl-C ends a stream cleanly:
    the outputs are closed and what was done is reported, with `interrupted` set."""
    from .render import annotate

    reader = VideoReader(source)
    writer = None
    tracker = FaceTracker(predictor, options)
    tracks: set[int] = set()
    interrupted, started = False, time.monotonic()
    try:
        writer = VideoWriter(annotated, reader.fps, reader.width, reader.height) if annotated is not None else None
        for index, t, image in reader:
            found = tracker.update(image, t)
            tracks.update(found.tracks)
            if writer is not None:
                writer.write(annotate(image, found.faces, found.tracks))
            if on_frame is not None:
                on_frame(index, t, found)
            if progress is not None:
                rate = (index + 1) / max(1e-6, time.monotonic() - started)
                progress(index + 1, reader.frame_count, f"{rate:.1f} frames/s")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    error = None
    if reader.truncated:
        error = f"{source}: truncated or damaged: ended after {reader.frames_read} of {reader.frame_count} frames"
    elif reader.frames_read == 0:
        error = f"{source}: no frame could be read"
    return {"path": str(source), "frames": reader.frames_read, "fps": round(reader.fps, 3), "width": reader.width,
            "height": reader.height, "tracks": len(tracks), "annotated": str(annotated) if annotated else None,
            "error": error, "interrupted": interrupted, "seconds": round(time.monotonic() - started, 3)}
