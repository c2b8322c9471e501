"""One face over time: gap filling, box smoothing, square crop windows and cropping.

(Many faces: :mod:`fmae.face.multi_tracking` says which detections are one person; each
person's boxes then go through these steps like one face's.)

Boxes are ``(x0, y0, x1, y1)`` and points ``(x, y)`` in continuous frame coordinates:
``x`` right, ``y`` down, pixel ``(i, j)`` covering ``[j, j + 1) × [i, i + 1)`` (so a
MediaPipe landmark is ``(x * W, y * H)`` and a box's ``x1 - x0`` is its width).
The pipeline (:mod:`fmae.data.face_pass`) detects a face box per frame (``NaN`` rows
where there is none), then:

1. :func:`hold_gaps` fills the frames without a face with the last good box (the
   frames before the first detection take the first one) and says which detection
   each frame borrowed;
2. :func:`smooth` averages centre and size over a centred window, so the crop does not
   jitter with the detector (not across :func:`jumps`, where a person changed places);
3. :func:`crop_windows` turns them into integer square windows with a margin,
   shifted inside the frame where they fit and left to overhang (padded black) where
   they do not;
4. :func:`crop_frame` cuts and resizes each frame; :func:`to_crop_coords` maps points
   (landmarks) into the crop.
"""

from __future__ import annotations

import cv2
import numpy as np


def hold_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``NaN`` rows with the last good row before them (the first good row, before it).

    values: ``float [T, D]``, a row all-``NaN`` where there was no detection.
    Returns ``(filled float32 [T, D], source int64 [T])``: row ``t`` of ``filled`` is row
    ``source[t]`` of ``values`` (``source[t] == t`` where it was good), so
    ``abs(t - source[t])`` is how many frames away the borrowed detection is. Raises
    ``ValueError`` if no row is good.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"values must be [T, D], got shape {values.shape}")
    good = ~np.isnan(values).any(axis=1)
    if not good.any():
        raise ValueError("no frame has a face")
    t = np.arange(len(values))
    last = np.maximum.accumulate(np.where(good, t, -1))  # last good index at or before t
    source = np.where(last >= 0, last, int(np.argmax(good)))
    return values[source], source


def frame_ranges(mask: np.ndarray) -> list[list[int]]:
    """``[start, stop)`` runs of True in a ``bool [T]`` mask, as lists (JSON-ready)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask).astype(np.int8), [0]])))
    return edges.reshape(-1, 2).tolist()


def smooth(values: np.ndarray, window: int, breaks: np.ndarray | None = None) -> np.ndarray:
    """Centred moving average over ``window`` frames (odd; 1 = no smoothing).

    values: ``float [T, D]``; returns ``float32 [T, D]``. Near the ends the window
    shrinks symmetrically, so constant and linear motion pass through unchanged.
    breaks: ``bool [T]``, True where a new stretch starts that the window must not reach
    across (a face that jumped to another tile: averaging across would put the crop
    between the two); each stretch is smoothed as if it were the whole video.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    if breaks is not None:
        starts = np.flatnonzero(np.asarray(breaks, bool)[1:]) + 1
        return np.concatenate([smooth(part, window) for part in np.split(np.asarray(values), starts)])
    values = np.asarray(values, dtype=np.float64)
    T = len(values)
    if window == 1 or T < 3:
        return values.astype(np.float32)
    t = np.arange(T)
    half = np.minimum(np.minimum(t, T - 1 - t), window // 2)
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    lo, hi = t - half, t + half + 1
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def jumps(boxes: np.ndarray) -> np.ndarray:
    """``bool [T]``: frames whose box centre moved more than the box's side since the frame
    before (a face that changed tiles, or came back elsewhere): where :func:`smooth` breaks.

    boxes: ``float [T, 4]`` without ``NaN`` (after :func:`hold_gaps`).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    moved = np.zeros(len(boxes), bool)
    moved[1:] = np.abs(np.diff(centre, axis=0)).max(1) > side[:-1]
    return moved


def crop_windows(boxes: np.ndarray, frame_hw: tuple[int, int], margin: float) -> np.ndarray:
    """Square integer crop windows around face boxes.

    boxes: ``float [T, 4]`` face boxes (no ``NaN``); frame_hw: ``(H, W)``. Each window
    is centred on its box with side ``round(max(w, h) * (1 + 2 * margin))`` (at least 2
    pixels). Along an axis where the side fits in the frame the window is shifted inside
    it (clamped); where it does not, it stays centred and overhangs both edges, and
    :func:`crop_frame` pads with black. Returns ``float32 [T, 4]`` of whole numbers
    ``x0, y0, x1, y1`` with ``x1 - x0 == y1 - y0``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    boxes = np.asarray(boxes, dtype=np.float64)
    H, W = frame_hw
    side = np.maximum(np.round(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)), 2)
    out = np.empty_like(boxes)
    for axis, extent in ((0, W), (1, H)):
        centre = 0.5 * (boxes[:, axis] + boxes[:, axis + 2])
        start = np.round(centre - 0.5 * side)
        fits = side <= extent
        start = np.where(fits, np.clip(start, 0, extent - side), start)
        out[:, axis], out[:, axis + 2] = start, start + side
    return out.astype(np.float32)


def crop_frame(frame: np.ndarray, window: np.ndarray, size: int, fast: bool = False) -> np.ndarray:
    """Cut an integer window out of a frame, black where it overhangs, resized to ``size``².

    frame: ``uint8 [H, W, C]`` (or ``[H, W]``); window: ``x0, y0, x1, y1`` whole numbers
    (from :func:`crop_windows`). Returns ``uint8 [size, size, C]``. Downscaling uses area
    averaging (no aliasing), upscaling bilinear interpolation.

    fast: a window of up to 4 × ``size`` is downscaled in two steps, bilinear to ``2 × size`` and
    then area averaging by exactly 2 (OpenCV's area filter is ~5× faster at a whole factor than
    at a fractional one); the result differs from the one-step area filter (the reference,
    ``fast=False``) by under one level on average, a few at the 99th percentile
    (``tests/face/test_tracking.py`` binds them).
    """
    x0, y0, x1, y1 = (int(v) for v in np.asarray(window))
    H, W = frame.shape[:2]
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop window {window}")
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
        patch = frame[y0:y1, x0:x1]
    else:
        patch = np.zeros((y1 - y0, x1 - x0, *frame.shape[2:]), dtype=frame.dtype)
        if cx1 > cx0 and cy1 > cy0:
            patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = frame[cy0:cy1, cx0:cx1]
    patch = np.ascontiguousarray(patch)
    if fast and size < patch.shape[0] <= 4 * size:
        double = cv2.resize(patch, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
        out = cv2.resize(double, (size, size), interpolation=cv2.INTER_AREA)
    else:
        interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
        out = cv2.resize(patch, (size, size), interpolation=interp)
    return out.reshape(size, size, *frame.shape[2:])


def to_crop_coords(points: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """Frame points ``float [K, 2]`` (x, y) into the ``size``² crop of ``window``: ``float32 [K, 2]``.

    Both sides use continuous coordinates, the same convention ``cv2.resize`` samples
    with, so a landmark stays on the same image content.
    """
    x0, y0, x1, _ = np.asarray(window, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return ((points - (x0, y0)) * (size / (x1 - x0))).astype(np.float32)
