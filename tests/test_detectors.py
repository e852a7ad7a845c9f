"""Face detectors: the bundled MTCNN on a real photograph, on empty images, through any working size,
and the note printed when a model meets a detector it was not calibrated for."""


import json

import numpy as np
import pytest
import torch

from fkd_cli.images import read_image
from fkd_cli.detect import HaarDetector, MTCNNDetector, build_detector
from fkd_cli.mtcnn import nms, nms_min
from fkd_cli.mtcnn_nets import load_networks

from .helpers import invoke, make_dataset, one_line_error

# where the astronaut's face is in skimage's 512x512 photograph (checked by eye on a drawn box)
FACE_CENTRE = (215.0, 120.0)


@pytest.fixture(scope="module")
def mtcnn() -> MTCNNDetector:
    return MTCNNDetector()


def _centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def test_mtcnn_weights_load_without_pickled_code():
    pnet, rnet, onet = load_networks()
    assert sum(p.numel() for p in pnet.parameters()) == 6632
    assert sum(p.numel() for p in onet.parameters()) == 389040


def test_mtcnn_finds_the_one_face_in_a_photograph(astronaut, mtcnn):
    image = read_image(astronaut)
    (face,) = mtcnn.detect(image)
    x, y = _centre(face.box)
    side = face.box[2] - face.box[0]
    assert abs(x - FACE_CENTRE[0]) < 30 and abs(y - FACE_CENTRE[1]) < 30
    assert 70 < side < 160 and face.score > 0.9


def test_mtcnn_boxes_follow_the_image_through_resizing(astronaut, mtcnn):
    """Small images are enlarged and large ones shrunk to a working size; boxes come back in the
    caller's pixels either way."""
    from PIL import Image

    for size in (256, 1600):
        scaled = np.asarray(Image.open(astronaut).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        (face,) = mtcnn.detect(scaled)
        x, y = _centre(face.box)
        factor = size / 512
        assert abs(x / factor - FACE_CENTRE[0]) < 30 and abs(y / factor - FACE_CENTRE[1]) < 30


def test_mtcnn_finds_nothing_in_an_empty_image(mtcnn):
    assert mtcnn.detect(np.full((300, 400, 3), 128, dtype=np.uint8)) == []
    assert mtcnn.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []


def test_haar_still_available(astronaut):
    (face, *_) = HaarDetector().detect(read_image(astronaut))
    assert 0.5 < face.score <= 1.0  # raw level weights mapped into [0, 1], like MTCNN's
    x, y = _centre(face.box)
    assert abs(x - FACE_CENTRE[0]) < 30 and abs(y - FACE_CENTRE[1]) < 30
    assert build_detector("mtcnn").name == "mtcnn"


def test_min_overlap_nms_drops_a_box_inside_a_better_one():
    boxes = np.array([[0.0, 0, 100, 100], [10, 10, 50, 50], [200, 200, 260, 260]], np.float32)
    scores = np.array([0.9, 0.95, 0.8], np.float32)
    # the small box scores higher but the big one overlaps it fully: with the min rule one goes
    assert sorted(nms_min(boxes, scores, 0.7).tolist()) == [1, 2]


def test_nms_keeps_the_boxes_torchvision_keeps():
    """OpenCV's NMS (the detector's, no torch) against torchvision's, on random boxes with and without tied scores."""
    import torchvision

    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        corner = rng.uniform(0, 300, (n, 2))
        boxes = np.floor(np.concatenate([corner, corner + rng.uniform(5, 80, (n, 2))], axis=1)).astype(np.float32)
        scores = rng.uniform(0.6, 1, n).astype(np.float32)
        if trial % 2:
            scores = np.round(scores, 2)  # P-Net's saturated scores tie
        threshold = 0.5 if trial % 3 else 0.7
        expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        assert np.array_equal(nms(boxes, scores, threshold), expected)


def test_a_detector_the_model_was_not_calibrated_for_gets_a_note(astronaut, tmp_path):
    result = invoke("predict", astronaut, "--detector", "haar", "--no-draw", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    assert "calibrated for the mtcnn detector" in result.output
    result = invoke("predict", astronaut, "--no-draw", "--json", tmp_path / "q.json")
    assert result.exit_code == 0 and "calibrated for" not in result.output


@pytest.mark.slow
def test_calibrate_fits_a_model_to_another_detector(astronaut, tmp_path):
    """`fkd calibrate` on a small official-layout folder cut from a real photograph: the Haar rule is
    measured on its training faces and stored in a copy of the model; the weights stay the same."""
    from PIL import Image

    from fkd_cli import load_model
    from fkd_cli.backends import bundled_model_path

    photo = Image.open(astronaut)
    points = torch.tensor(load_model(detector="mtcnn").predict(str(astronaut)).keypoints[0])
    data = tmp_path / "data"
    for split in ("training", "test"):
        (data / split).mkdir(parents=True)
        rows = ["," + ",".join(str(i) for i in range(136))]
        for k in range(12 if split == "training" else 1):
            dx, dy = 8 * (k % 4), 6 * (k // 4)
            photo.crop((dx, dy, dx + 400, dy + 380)).save(data / split / f"a{k}.png")
            shifted = points - torch.tensor([dx, dy], dtype=torch.float32)
            rows.append(f"a{k}.png," + ",".join(f"{v:.2f}" for v in shifted.reshape(-1).tolist()))
        (data / f"{split}_frames_keypoints.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "haar.pth"
    result = invoke("calibrate", bundled_model_path(), "--detector", "haar", "--data-dir", data, "--out", out)
    assert result.exit_code == 0, result.output
    before, after = (torch.load(p, weights_only=True) for p in (bundled_model_path(), out))
    assert after["preprocess"]["rule"]["detector"] == "haar" and after["preprocess"]["rule"]["samples"] == 12
    assert after["config"]["detector"] == "haar"
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    result = invoke("predict", astronaut, "--model", out, "--detector", "haar", "--no-draw")
    assert result.exit_code == 0 and "calibrated for" not in result.output


def test_calibrate_refuses_too_few_matches(tiny_run, tmp_path):
    """Blank frames: no detector finds a face, so no rule is measured and nothing is written."""
    from PIL import Image

    data = make_dataset(tmp_path / "data", n_train=12, n_test=1)
    for path in (data / "training").iterdir():
        Image.new("RGB", (120, 100), (90, 90, 90)).save(path, format="PNG")
    out = tmp_path / "m.pth"
    result = invoke("calibrate", tiny_run / "model.pth", "--detector", "mtcnn", "--data-dir", data, "--out", out)
    text = one_line_error(result)
    assert "matched only" in text and not out.exists()


def test_mtcnn_on_onnx_runtime_matches_pytorch(astronaut):
    """The shipped ONNX stages are the same networks (each PReLU exported as FastPReLU), R-Net and O-Net
    with the same crops (ONNX's RoiAlign against torchvision's roi_align): same faces, boxes within a hundredth of a pixel."""
    from fkd_cli.mtcnn import MTCNN, OrtStage

    fast, reference = MTCNN(), MTCNN(runtime="pytorch")
    assert isinstance(fast.pnet, OrtStage) and not isinstance(reference.pnet, OrtStage)
    rng = np.random.default_rng(0)
    for x in (rng.uniform(-1, 1, (2, 3, 37, 53)), rng.uniform(-1, 1, (1, 3, 150, 120))):
        for a, b in zip(fast.pnet(x.astype(np.float32)), reference.pnet(x.astype(np.float32))):
            np.testing.assert_allclose(a, b, atol=1e-4)
    photo = rng.uniform(0, 255, (1, 3, 90, 130)).astype(np.float32)
    boxes = np.array([[-10, -5, 30, 35], [20, 10, 80, 70], [100, 60, 140, 100], [5.5, 7.25, 17.5, 19.25]], np.float32)
    for stage in ("rnet", "onet"):  # boxes past the edges read zeros, as the original padding
        for a, b in zip(getattr(fast, stage)(photo, boxes), getattr(reference, stage)(photo, boxes)):
            np.testing.assert_allclose(a, b, atol=1e-4)
    image = read_image(astronaut)
    boxes, scores = fast(image)
    expected, expected_scores = reference(image)
    assert boxes.shape == expected.shape and np.allclose(boxes, expected, atol=1e-2)
    assert np.allclose(scores, expected_scores, atol=1e-4)


def test_fast_prelu_is_prelu():
    """The exported PReLU (max(x, a x), or x + (a - 1) min(x, 0) where a slope exceeds 1) is PReLU."""
    from torch import nn

    from fkd_cli.mtcnn_nets import FastPReLU

    x = torch.randn(3, 5, 7, 9)
    for slopes in (torch.tensor([-0.5, 0.0, 0.3, 0.99, 1.0]), torch.tensor([-1.3, 0.2, 1.0, 1.01, 1.3])):
        prelu = nn.PReLU(5)
        prelu.weight.data = slopes
        fast = FastPReLU(prelu)
        torch.testing.assert_close(fast(x), prelu(x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(fast(x[:, :, 0, 0]), prelu(x[:, :, 0, 0]), atol=1e-6, rtol=1e-6)
    assert FastPReLU(prelu).slope_at_most_one is False


def test_networks_as_exported_compute_the_same():
    """for_export's copies (FastPReLU, the face probability from one logit difference) give the
    networks' outputs, and leave the originals as they were."""
    from fkd_cli.mtcnn_nets import FastPReLU, for_export

    for net, size in zip(load_networks(), (30, 24, 48)):
        x = torch.randn(4, 3, size, size)
        fast = for_export(net)
        assert any(isinstance(m, FastPReLU) for m in fast.modules())
        assert not any(isinstance(m, FastPReLU) for m in net.modules())
        with torch.no_grad():
            for a, b in zip(fast(x), net(x)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _small_face_photo(astronaut, path, face_px: int):
    """The astronaut's head (about 110 px of the 512-px photograph) shrunk to about `face_px` px in a 640x480 photo."""
    from PIL import Image

    side = round(512 * face_px / 110)
    photo = Image.new("RGB", (640, 480), (70, 90, 110))
    photo.paste(Image.open(astronaut).convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (300, 200))
    photo.save(path)
    return path, side


def test_the_pyramid_starts_at_40_px_unless_asked(astronaut, tmp_path, mtcnn):
    """By default the P-Net pyramid starts from 40-px faces (4x fewer pixels than from 20 px); a tiny
    face (a 13-px box) is then missed, and found when asked for with --min-face 20, in Python and on
    the command line; below 20 px is refused in one line."""
    photo, side = _small_face_photo(astronaut, tmp_path / "small.png", face_px=16)
    image = read_image(photo)
    assert mtcnn.min_face_px == 40 and mtcnn.detect(image) == []
    (face,) = MTCNNDetector(min_face_px=20).detect(image)
    x, y = _centre(face.box)
    assert abs(x - (300 + FACE_CENTRE[0] * side / 512)) < 5 and abs(y - (200 + FACE_CENTRE[1] * side / 512)) < 5
    for extra, faces in (((), 0), (("--min-face", "20"), 1)):
        result = invoke("predict", photo, "--no-draw", "--json", tmp_path / f"{len(extra)}.json", *extra)
        assert result.exit_code == 0, result.output
        assert len(json.loads((tmp_path / f"{len(extra)}.json").read_text())["images"][0]["faces"]) == faces
    text = one_line_error(invoke("predict", photo, "--no-draw", "--min-face", "8"))
    assert "--min-face 8" in text and "20" in text
