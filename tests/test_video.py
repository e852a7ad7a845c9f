"""Video: tiny clips written by the tests (a real photograph's face moving), through `fkd predict`
and the Python API: per-frame JSON Lines and CSV, the annotated copy, stable track ids, smoothing,
broken inputs, missing cameras, Ctrl-C."""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from fkd_cli.inputs import is_video
from fkd_cli.video import OneEuroFilter, TrackerOptions, predict_video

from .helpers import invoke, one_line_error

SIZE = (320, 240)


def _write(path, frames, fps=10.0, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def face(astronaut):
    return np.asarray(Image.open(astronaut).convert("RGB").crop((120, 20, 320, 220)).resize((110, 110)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, face):
    """12 frames: one face moving right; a second joins at frame 6."""
    frames = []
    for f in range(12):
        canvas = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
        canvas[60:170, 10 + 6 * f:120 + 6 * f] = face
        if f >= 6:
            canvas[40:150, 200:310] = face
        frames.append(canvas)
    return _write(tmp_path_factory.mktemp("clip") / "walk.mp4", frames)


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count, capture.get(cv2.CAP_PROP_FPS), (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def test_predict_a_clip_end_to_end(clip, tmp_path):
    out = tmp_path / "runs"
    result = invoke("predict", clip, "--out", out, "--jsonl", tmp_path / "f.jsonl", "--csv", tmp_path / "f.csv",
                    "--json", tmp_path / "f.json", "--detect-every", "4")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    assert lines[3]["time"] == pytest.approx(0.3) and lines[3]["path"] == str(clip)
    tracks = [[face["track"] for face in line["faces"]] for line in lines]
    # stable ids; the face that joins at frame 6 is found at the next detector run (frame 8)
    assert all(t == [1] for t in tracks[:8]) and all(sorted(t) == [1, 2] for t in tracks[8:])
    face = lines[2]["faces"][0]
    assert set(face) >= {"track", "box", "score", "keypoints", "keypoint_scores", "landmark_score", "pose"}
    # the face moves 6 px a frame: so do its keypoints
    shift = np.mean(np.array(lines[5]["faces"][0]["keypoints"]) - np.array(lines[2]["faces"][0]["keypoints"]), axis=0)
    assert shift[0] == pytest.approx(18, abs=4) and abs(shift[1]) < 4
    rows = list(csv.reader((tmp_path / "f.csv").open()))
    assert rows[0][:5] == ["path", "frame", "time", "track", "face"] and len(rows) == 1 + sum(len(t) for t in tracks)
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["images"] == [] and report["videos"][0]["frames"] == 12 and report["videos"][0]["tracks"] == 2
    annotated = out / "walk.webm"
    assert report["videos"][0]["annotated"] == str(annotated)
    assert _frames(annotated) == (12, pytest.approx(10.0), SIZE)  # same frame count, rate and size


def test_videos_found_in_folders_and_by_content(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    shutil.copy(clip, tmp_path / "renamed.bin")
    assert is_video(tmp_path / "renamed.bin") and is_video(folder / "a.mp4")
    result = invoke("predict", folder, tmp_path / "renamed.bin", "--no-draw", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert [v["frames"] for v in json.loads((tmp_path / "r.json").read_text())["videos"]] == [12, 12]


def test_broken_videos_and_missing_cameras(clip, tmp_path, astronaut):
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "fake.mp4").write_text("not a video")
    result = invoke("predict", tmp_path / "cut.mp4", tmp_path / "fake.mp4", astronaut, "--no-draw", "--json", tmp_path / "r.json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    errors = {v["path"]: v["error"] for v in report["videos"]}
    assert "not a readable video" in errors[str(tmp_path / "fake.mp4")] or "no frame" in errors[str(tmp_path / "fake.mp4")]
    assert errors[str(tmp_path / "cut.mp4")]  # truncated: said so, not silently short
    assert len(report["images"][0]["faces"]) == 1  # the other inputs went on
    text = one_line_error(invoke("predict", "--source", "9", "--no-draw"))
    assert "camera 9" in text


def test_ctrl_c_ends_a_stream_cleanly(clip, tmp_path):
    from fkd_cli import load_model

    def stop_at_four(index, t, found):
        if index == 4:
            raise KeyboardInterrupt

    summary = predict_video(load_model(), str(clip), tmp_path / "part.webm", TrackerOptions(), stop_at_four)
    assert summary["interrupted"] and summary["frames"] == 5
    assert _frames(tmp_path / "part.webm")[0] == 5  # the annotated copy was closed, and plays


def test_one_euro_filter_calms_a_still_face_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    base = np.random.default_rng(1).uniform(100, 200, (68, 2)).astype(np.float32)
    smooth = OneEuroFilter(min_cutoff=0.5, beta=40.0)
    noisy, filtered = [], []
    for f in range(60):
        x = base + rng.normal(0, 0.5, (68, 2)).astype(np.float32)
        noisy.append(x)
        filtered.append(smooth(x, f / 30))
    step = lambda seq: float(np.mean([np.linalg.norm(b - a, axis=1).mean() for a, b in zip(seq[20:], seq[21:])]))  # noqa: E731
    assert step(filtered) < 0.5 * step(noisy)
    moving = OneEuroFilter(min_cutoff=0.5, beta=40.0)
    for f in range(30):  # 3 px a frame: about one face size a second
        out = moving(base + 3.0 * f, f / 30)
    assert float(np.linalg.norm(out - (base + 3.0 * 29), axis=1).mean()) < 3.0  # within a frame's motion of the truth


def test_tracker_api_frame_by_frame(face):
    from fkd_cli import load_model
    from fkd_cli.video import FaceTracker

    tracker = FaceTracker(load_model())
    ids = []
    for f in range(5):
        canvas = np.full((SIZE[1], SIZE[0], 3), 70, np.uint8)
        canvas[60:170, 10 + 6 * f:120 + 6 * f] = face
        found = tracker.update(canvas, f / 10)
        ids.append(found.tracks)
        assert found.faces[0].keypoints.shape == (68, 2)
    assert ids == [[1]] * 5
