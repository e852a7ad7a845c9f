"""Face detectors: the bundled MTCNN on a real photograph, on empty images, through any working size,
and the note printed when a model meets a detector it was not calibrated for."""


import pytest
import torch

from fkd_cli.data import read_image
from fkd_cli.detect import HaarDetector, MTCNNDetector, build_detector
from fkd_cli.mtcnn import load_networks, nms_min

from .conftest import invoke

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
    image = read_image(astronaut)
    for size in (256, 1600):
        scaled = torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode="bilinear")[0]
        (face,) = mtcnn.detect(scaled.round().clamp(0, 255).to(torch.uint8))
        x, y = _centre(face.box)
        factor = size / 512
        assert abs(x / factor - FACE_CENTRE[0]) < 30 and abs(y / factor - FACE_CENTRE[1]) < 30


def test_mtcnn_finds_nothing_in_an_empty_image(mtcnn):
    assert mtcnn.detect(torch.full((3, 300, 400), 128, dtype=torch.uint8)) == []
    assert mtcnn.detect(torch.zeros((3, 8, 8), dtype=torch.uint8)) == []


def test_haar_still_available(astronaut):
    (face, *_) = HaarDetector().detect(read_image(astronaut))
    x, y = _centre(face.box)
    assert abs(x - FACE_CENTRE[0]) < 30 and abs(y - FACE_CENTRE[1]) < 30
    assert build_detector("mtcnn").name == "mtcnn"


def test_min_overlap_nms_drops_a_box_inside_a_better_one():
    boxes = torch.tensor([[0.0, 0, 100, 100], [10, 10, 50, 50], [200, 200, 260, 260]])
    scores = torch.tensor([0.9, 0.95, 0.8])
    # the small box scores higher but the big one overlaps it fully: with the min rule one goes
    assert sorted(nms_min(boxes, scores, 0.7).tolist()) == [1, 2]


def test_a_detector_the_model_was_not_calibrated_for_gets_a_note(astronaut, tmp_path):
    result = invoke("predict", astronaut, "--detector", "haar", "--no-draw", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    assert "calibrated for the mtcnn detector" in result.output
    result = invoke("predict", astronaut, "--no-draw", "--json", tmp_path / "q.json")
    assert result.exit_code == 0 and "calibrated for" not in result.output
