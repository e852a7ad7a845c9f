"""Head pose and aligned face crops: conventions on exact synthetic projections, and on the bundled
model's points for a real photograph turned, scaled and mirrored."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from fkd_cli.geometry3d import FIT_WEIGHTS, MODEL_3D, TEMPLATE_112, five_points, head_pose, similarity

from .helpers import invoke


def _rotation(roll=0.0, yaw=0.0, pitch=0.0):
    """Camera-axes rotation for the documented angles (yaw to the image's right, pitch up, roll clockwise)."""
    r, b, a = math.radians(roll), math.radians(-yaw), math.radians(-pitch)
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return rz @ ry @ rx


def _project(rotation, width=640, height=480, shift=(30.0, -20.0, 700.0)):
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1.0]])
    points = (rotation @ MODEL_3D.T).T + np.array(shift)
    image = (camera @ points.T).T
    return image[:, :2] / image[:, 2:]


@pytest.mark.parametrize("angles", [(0, 0, 0), (20, 0, 0), (0, 25, 0), (0, 0, 15), (-30, -20, 10)])
def test_pose_recovers_known_angles(angles):
    roll, yaw, pitch = angles
    pose = head_pose(_project(_rotation(roll, yaw, pitch)), 640, 480)
    assert pose == pytest.approx({"yaw": yaw, "pitch": pitch, "roll": roll}, abs=0.05)


def test_pose_sign_conventions():
    # a face turned toward the image's right: its nose tip moves right of the eyes' midpoint
    turned = _project(_rotation(yaw=20))
    assert turned[30, 0] > (turned[36, 0] + turned[45, 0]) / 2
    # tilted up: the nose tip rises toward the eyes; clockwise: the right eye (as seen) drops
    up = _project(_rotation(pitch=15))
    assert up[30, 1] - up[36:48, 1].mean() < _project(_rotation())[30, 1] - _project(_rotation())[36:48, 1].mean()
    clockwise = _project(_rotation(roll=20))
    assert clockwise[45, 1] > clockwise[36, 1]


def test_pose_needs_68_finite_points():
    assert head_pose(np.zeros((5, 2)), 100, 100) is None
    assert head_pose(np.full((68, 2), np.nan), 100, 100) is None
    # all points in one place (an untrained network's output): OpenCV's SQPnP asserts; no pose, no crash
    assert head_pose(np.full((68, 2), 50.0), 100, 100) is None


@pytest.fixture(scope="module")
def bundled():
    from fkd_cli import load_model

    return load_model()


def test_rotating_a_real_face_moves_roll_by_that_angle(bundled, astronaut):
    """The photograph turned in its plane (about its centre, same size): roll follows within 3 degrees."""
    photo = Image.open(astronaut).convert("RGB")
    base = head_pose(bundled.predict(photo).keypoints[0], 512, 512)
    for angle in (15, -15):
        turned = photo.rotate(angle, resample=Image.BILINEAR)  # PIL turns counter-clockwise
        pose = head_pose(bundled.predict(turned).keypoints[0], 512, 512)
        assert pose["roll"] - base["roll"] == pytest.approx(-angle, abs=3.0)
    # and the points themselves turned exactly: the pose maths is exact
    points = bundled.predict(photo).keypoints[0].astype(np.float64)
    c, s = math.cos(math.radians(25)), math.sin(math.radians(25))
    turned_points = (points - 256) @ np.array([[c, s], [-s, c]]) + 256  # clockwise as seen (y down)
    assert head_pose(turned_points, 512, 512)["roll"] - base["roll"] == pytest.approx(25, abs=0.5)


def test_mirrored_face_flips_yaw(bundled, astronaut):
    photo = Image.open(astronaut).convert("RGB")
    yaw = head_pose(bundled.predict(photo).keypoints[0], 512, 512)["yaw"]
    mirrored = head_pose(bundled.predict(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).keypoints[0], 512, 512)["yaw"]
    assert abs(yaw) > 1 and np.sign(mirrored) == -np.sign(yaw) and abs(mirrored + yaw) < 2


def test_similarity_is_exact_for_similar_shapes():
    c, s = math.cos(0.4), math.sin(0.4)
    source = TEMPLATE_112 @ np.array([[c, -s], [s, c]]).T * 1.7 + np.array([40.0, -12.0])
    matrix = similarity(source, TEMPLATE_112)
    assert np.allclose(source @ matrix[:, :2].T + matrix[:, 2], TEMPLATE_112, atol=1e-9)


@pytest.mark.parametrize("angle, scale", [(0, 1.0), (25, 1.0), (-20, 0.5), (35, 1.6)])
def test_aligned_crop_puts_the_eyes_level_and_on_the_template(bundled, astronaut, angle, scale):
    photo = Image.open(astronaut).convert("RGB")
    photo = photo.rotate(angle, resample=Image.BILINEAR, expand=True)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    result = bundled.predict(photo)
    for size in (112, 224):
        crop = result.aligned(0, size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        # the model's own points, carried through the same transform
        matrix = similarity(five_points(result.keypoints[0]), TEMPLATE_112 * size / 112, FIT_WEIGHTS)
        eyes = five_points(result.keypoints[0])[:2] @ matrix[:, :2].T + matrix[:, 2]
        template = TEMPLATE_112[:2] * size / 112
        assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0  # level
        assert np.abs(eyes - template).max() < 2.0 * size / 112
    # and the crop shows the face: the network finds its points where the template says
    again = bundled.configured().predict(np.ascontiguousarray(result.aligned(0, 224)))
    if len(again):  # the crop is tight; when the detector sees the face, the eyes sit on the template
        found = five_points(again.keypoints[0])[:2]
        assert np.abs(found - TEMPLATE_112[:2] * 2).max() < 12


def test_save_crops_from_the_command_line(astronaut, tmp_path):
    result = invoke("predict", astronaut, "--save-crops", "--crop-size", "224", "--no-draw", "--out", tmp_path / "o",
                    "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    (crop,) = (tmp_path / "o" / "crops").iterdir()
    assert crop.name == "astronaut_face0.png" and Image.open(crop).size == (224, 224)
    assert not list((tmp_path / "o").glob("*.png"))  # --no-draw: crops only
    pose = json.loads((tmp_path / "r.json").read_text())["images"][0]["faces"][0]["pose"]
    assert set(pose) == {"yaw", "pitch", "roll"} and abs(pose["roll"]) < 10
