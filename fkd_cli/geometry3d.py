"""What people build on 68 landmarks: head pose (yaw, pitch, roll) and aligned face crops.

Head pose: `cv2.solvePnP` fits a generic 3D face (all 68 iBUG points, in millimetres) to the
predicted points with a pinhole camera whose focal length is the image width. Conventions, as the
image is seen:
- yaw > 0: the face turns toward the image's right (the subject's left);
- pitch > 0: the face tilts up;
- roll > 0: the face is rotated clockwise in the image;
applied in the order roll, yaw, pitch (R = Rz(roll) Ry(yaw) Rx(pitch) in camera axes). A frontal face
is (0, 0, 0).

Aligned crops: a similarity transform (rotation, uniform scale, shift; least squares) takes five
points (eye centres, nose tip, mouth corners) onto the 112x112 template that ArcFace-style face
recognition models expect (InsightFace's), scaled for other sizes; the eyes weigh twice in the fit.
"""

from __future__ import annotations

import math

import numpy as np

# A generic head for all 68 points, in millimetres (x right, y down, z away from the camera; nose tip
# at the origin): x and y are the mean Procrustes-aligned shape of the dev training landmarks,
# symmetrised, levelled and scaled to 90 mm between the outer eye corners; z is an anthropometric
# depth by region (jaw ends 95 mm behind the nose tip, eyes 22-30, mouth 15-30, chin 20). Fitting all
# 68 points rather than six keeps the angles steady when single points are off.
MODEL_3D = np.array([
    (-78.2, -36.9, 95.0), (-77.2, -16.3, 85.0), (-73.9, 2.3, 75.0), (-70.0, 20.4, 65.0),
    (-63.5, 40.5, 52.0), (-52.4, 57.2, 40.0), (-40.1, 68.2, 30.0), (-24.2, 77.9, 24.0),
    (0.0, 84.3, 20.0), (24.2, 77.9, 24.0), (40.1, 68.2, 30.0), (52.4, 57.2, 40.0),
    (63.5, 40.5, 52.0), (70.0, 20.4, 65.0), (73.9, 2.3, 75.0), (77.2, -16.3, 85.0),
    (78.2, -36.9, 95.0), (-59.3, -56.1, 35.0), (-50.2, -62.2, 25.0), (-38.8, -64.1, 20.0),
    (-28.3, -63.0, 18.0), (-19.0, -60.4, 18.0), (19.0, -60.4, 18.0), (28.3, -63.0, 18.0),
    (38.8, -64.1, 20.0), (50.2, -62.2, 25.0), (59.3, -56.1, 35.0), (0.0, -38.1, 22.0),
    (0.0, -24.2, 15.0), (0.0, -11.1, 8.0), (0.0, 0.0, 0.0), (-12.6, 8.1, 15.0),
    (-7.2, 9.7, 10.0), (0.0, 11.4, 8.0), (7.2, 9.7, 10.0), (12.6, 8.1, 15.0),
    (-45.0, -39.6, 30.0), (-37.7, -42.2, 22.0), (-28.5, -42.3, 22.0), (-20.0, -38.5, 24.0),
    (-27.8, -35.8, 22.0), (-37.5, -35.8, 22.0), (20.0, -38.5, 24.0), (28.5, -42.3, 22.0),
    (37.7, -42.2, 22.0), (45.0, -39.6, 30.0), (37.5, -35.8, 22.0), (27.8, -35.8, 22.0),
    (-26.5, 33.7, 30.0), (-17.5, 28.0, 22.0), (-6.0, 24.5, 17.0), (0.0, 25.7, 15.0),
    (6.0, 24.5, 17.0), (17.5, 28.0, 22.0), (26.5, 33.7, 30.0), (17.0, 41.8, 22.0),
    (9.0, 46.3, 18.0), (0.0, 47.2, 17.0), (-9.0, 46.3, 18.0), (-17.0, 41.8, 22.0),
    (-24.6, 33.4, 28.0), (-7.8, 31.5, 20.0), (0.0, 31.2, 17.0), (7.8, 31.5, 20.0),
    (24.6, 33.4, 28.0), (7.7, 36.9, 20.0), (0.0, 37.7, 18.0), (-7.7, 36.9, 20.0),
])

# InsightFace's 112x112 template: left eye, right eye (as seen), nose tip, left and right mouth corner
TEMPLATE_112 = np.array([
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
])


def head_pose(points: np.ndarray, width: int, height: int) -> dict | None:
    """Yaw, pitch and roll in degrees (see the module docstring) from 68 points (68, 2); None for
    other layouts or when the fit fails."""
    import cv2

    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        return None
    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    try:  # SQPnP: globally optimal, no flipped local minimum
        ok, rvec, _ = cv2.solvePnP(MODEL_3D, points, camera, np.zeros(4), flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:  # it asserts on points with (almost) no spread, as an untrained network gives: no pose
        return None
    if not ok:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    # R = Rz(roll) Ry(b) Rx(a) in camera axes (y down): b > 0 turns the face to the image's left and
    # a > 0 tilts it down, so both flip sign to read as "right" and "up"
    b = math.degrees(math.asin(max(-1.0, min(1.0, -rotation[2, 0]))))
    a = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return {"yaw": round(-b, 2), "pitch": round(-a, 2), "roll": round(roll, 2)}


def five_points(points: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (5, 2) from 68 iBUG points."""
    points = np.asarray(points, dtype=np.float64)
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


# The eyes count twice in the fit: they land within 2 px of the template (with equal weights the
# nose and mouth pull them off by up to ~2.5 px on real faces), the other points stay close.
FIT_WEIGHTS = np.array([2.0, 2.0, 1.0, 1.0, 1.0])


def similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) that best maps `source` onto `target`
    (weighted least squares)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    source_mean, target_mean = (w[:, None] * source).sum(0), (w[:, None] * target).sum(0)
    s, t = source - source_mean, target - target_mean
    zs, zt = s[:, 0] + 1j * s[:, 1], t[:, 0] + 1j * t[:, 1]
    a = (w * np.conj(zs) * zt).sum() / (w * np.abs(zs) ** 2).sum()  # scale * e^(i angle)
    rotation = np.array([[a.real, -a.imag], [a.imag, a.real]])
    shift = target_mean - rotation @ source_mean
    return np.hstack([rotation, shift[:, None]])


def aligned_crop(image: np.ndarray, points: np.ndarray, size: int = 112) -> np.ndarray:
    """The face of `image` (H, W, 3 uint8) with 68 `points`, warped onto the template at `size` px."""
    import cv2

    matrix = similarity(five_points(points), TEMPLATE_112 * (size / 112.0), FIT_WEIGHTS)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
