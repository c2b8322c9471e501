"""Region maps from MediaPipe FaceMesh landmarks (the 468-point topology, or 478 with irises).

The polygons are MediaPipe's own contours (``mp.solutions.face_mesh_connections``),
chained into ordered loops once and written out here, so parsing needs no MediaPipe
import (``tests/face/test_landmark_regions.py`` checks them against MediaPipe's edge sets):

- face oval → :attr:`FaceRegion.SKIN` (eyebrows, forehead and cheeks included);
- nose → :attr:`FaceRegion.NOSE`: the convex hull of MediaPipe's nose points (they form
  no loop), from the bridge between the eyes to the nostrils;
- lips, outer loop → :attr:`FaceRegion.MOUTH` (the open mouth inside it included);
- eye contours → :attr:`FaceRegion.LEFT_EYE` / :attr:`FaceRegion.RIGHT_EYE`. MediaPipe's
  LEFT is the subject's left, on the image's right, as in :class:`FaceRegion`;
- hair has no landmarks: person pixels of a segmentation mask outside the face oval,
  on the forehead's side of the line through the eye centres and within half a face
  width of the face's sides → :attr:`FaceRegion.HAIR` (hats count as hair);
- everything else → :attr:`FaceRegion.BACKGROUND` (neck and clothes included).

Later regions are painted over earlier ones in that order: background, hair, skin,
nose, mouth, eyes.
"""

from __future__ import annotations

import cv2
import numpy as np

from fmae.face.regions import FaceRegion

NUM_MESH_LANDMARKS = 468
FACE_OVAL: tuple[int, ...] = (
    10,
    109,
    67,
    103,
    54,
    21,
    162,
    127,
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    149,
    176,
    148,
    152,
    377,
    400,
    378,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
    356,
    389,
    251,
    284,
    332,
    297,
    338,
)
LEFT_EYE: tuple[int, ...] = (249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 263)
RIGHT_EYE: tuple[int, ...] = (7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163)
LIPS_OUTER: tuple[int, ...] = (
    0,
    37,
    39,
    40,
    185,
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    409,
    270,
    269,
    267,
)
NOSE: tuple[int, ...] = (
    1,
    2,
    4,
    5,
    6,
    19,
    45,
    48,
    64,
    94,
    97,
    98,
    115,
    168,
    195,
    197,
    220,
    275,
    278,
    294,
    326,
    327,
    344,
    440,
)
"""MediaPipe's nose points, unordered (the region is their convex hull)."""

_SUBPIXEL_BITS = 4  # cv2.fillPoly takes fixed-point vertices: 1/16-pixel precision
# The contours as index arrays, made once (a map is made per frame).
_OVAL, _NOSE, _LIPS = np.array(FACE_OVAL), np.array(NOSE), np.array(LIPS_OUTER)
_LEFT_EYE, _RIGHT_EYE = np.array(LEFT_EYE), np.array(RIGHT_EYE)


def _fill(canvas: np.ndarray, polygon: np.ndarray, value: int) -> None:
    # Continuous coordinates to pixel-centre ones, then to cv2's fixed point.
    pts = np.round((polygon - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], int(value), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face's own frame from its landmarks: ``(eye_mid, up, left)``, each ``float64 [2]``.

    ``eye_mid`` is the midpoint of the eye centres; ``up`` the unit vector from the
    mouth centre towards it; ``left`` the unit vector towards the subject's left
    (``up`` turned a quarter clockwise on screen: the image's right for an upright face).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_mid = 0.5 * (lm[_LEFT_EYE].mean(0) + lm[_RIGHT_EYE].mean(0))
    up = eye_mid - lm[_LIPS].mean(0)
    up /= max(np.linalg.norm(up), 1e-6)
    return eye_mid, up, np.array([-up[1], up[0]])


def regions_from_landmarks(
    landmarks: np.ndarray, shape: tuple[int, int], person_mask: np.ndarray | None = None
) -> np.ndarray:
    """Rasterise a face's landmarks into a :class:`FaceRegion` map.

    landmarks: ``float [K, 2]``, ``K >= 468``, FaceMesh points ``(x, y)`` in the map's
    continuous pixel coordinates (see :mod:`fmae.face.tracking`); shape: ``(H, W)``;
    person_mask: optional ``bool [H, W]`` (e.g. SelfieSegmentation), the source of
    :attr:`FaceRegion.HAIR` — without it there is no hair. Returns ``uint8 [H, W]``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < NUM_MESH_LANDMARKS:
        raise ValueError(f"landmarks must be [K >= {NUM_MESH_LANDMARKS}, 2], got shape {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    H, W = shape
    regions = np.full((H, W), FaceRegion.BACKGROUND, dtype=np.uint8)
    oval = np.zeros((H, W), dtype=np.uint8)
    _fill(oval, lm[_OVAL], 1)
    if person_mask is not None:
        if person_mask.shape != (H, W):
            raise ValueError(f"person_mask must be {(H, W)}, got {person_mask.shape}")
        regions[_hair(lm, person_mask, oval)] = FaceRegion.HAIR
    regions[oval.view(bool)] = FaceRegion.SKIN
    _fill(regions, cv2.convexHull(lm[_NOSE].astype(np.float32))[:, 0].astype(np.float64), FaceRegion.NOSE)
    _fill(regions, lm[_LIPS], FaceRegion.MOUTH)
    _fill(regions, lm[_LEFT_EYE], FaceRegion.LEFT_EYE)
    _fill(regions, lm[_RIGHT_EYE], FaceRegion.RIGHT_EYE)
    return regions


def _hair(lm: np.ndarray, person_mask: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """Person pixels outside the oval, above the eye line, at most half a face width beside the face."""
    H, W = person_mask.shape
    eye_mid, up, left = face_axes(lm)
    # A row and a column of pixel centres, broadcast: the same float32 values as a full grid, a
    # fraction of the work.
    xs = np.arange(W, dtype=np.float32)[None, :] + np.float32(0.5)
    ys = np.arange(H, dtype=np.float32)[:, None] + np.float32(0.5)
    dx, dy = xs - eye_mid[0], ys - eye_mid[1]
    across = dx * left[0] + dy * left[1]
    along = dx * up[0] + dy * up[1]
    oval_across = (lm[_OVAL] - eye_mid) @ left
    width = oval_across.max() - oval_across.min()
    beside = (across > oval_across.min() - 0.5 * width) & (across < oval_across.max() + 0.5 * width)
    return person_mask.astype(bool) & (oval == 0) & (along > 0) & beside
