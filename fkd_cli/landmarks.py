"""Facts about the 68-point iBUG 300-W layout: left/right pairs, face regions, contours to draw."""

from __future__ import annotations


def _ibug68_flip() -> list[int]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# Mirroring an image turns the subject's left eye into their right: the point indices must swap too.
IBUG68_FLIP = _ibug68_flip()
IBUG68_NORM_POINTS = (36, 45)  # outer eye corners: the 300-W "inter-ocular" normaliser
IBUG68_REGIONS = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}
# Named regions as face_recognition users know them; "left"/"right" as seen in the image (so
# `left_eye` is the subject's right eye), which is face_recognition's and dlib's convention.
IBUG68_NAMED_REGIONS = {
    "jaw": list(range(0, 17)),
    "left_eyebrow": list(range(17, 22)),
    "right_eyebrow": list(range(22, 27)),
    "nose_bridge": list(range(27, 31)),
    "nose_tip": list(range(31, 36)),
    "left_eye": list(range(36, 42)),
    "right_eye": list(range(42, 48)),
    "outer_lips": list(range(48, 60)),
    "inner_lips": list(range(60, 68)),
}


def default_regions(num_keypoints: int) -> dict[str, list[int]] | None:
    """The named regions of a layout: iBUG-68's, or none for other keypoint sets (a config may set its own)."""
    return {k: list(v) for k, v in IBUG68_NAMED_REGIONS.items()} if num_keypoints == 68 else None


# Polylines drawn on annotated images: (first, last, closed)
IBUG68_CONTOURS = [
    (0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
    (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True),
]


def contour_edges(num_keypoints: int) -> list[tuple[int, int]]:
    """Point pairs to join when drawing; none for layouts other than iBUG-68."""
    if num_keypoints != 68:
        return []
    edges = []
    for first, last, closed in IBUG68_CONTOURS:
        edges += [(i, i + 1) for i in range(first, last)]
        if closed:
            edges.append((last, first))
    return edges


def validate_permutation(perm: list[int], num_keypoints: int) -> None:
    """A flip permutation must be a self-inverse reordering of all K indices."""
    from .errors import FkdError

    if sorted(perm) != list(range(num_keypoints)):
        raise FkdError(
            f"config key 'flip_permutation' must list each of the {num_keypoints} keypoint indices once"
        )
    if any(perm[perm[i]] != i for i in range(num_keypoints)):
        raise FkdError("config key 'flip_permutation' must be its own inverse (pairs of swapped indices)")
