"""Keyframes: run the costly face models on every ``k``-th frame and fill the frames between.

The face pass (:mod:`fmae.data.face_pass`) spends most of its time in two models per frame,
the detector/tracker (MediaPipe FaceMesh: landmarks) and, for the region maps, the person
segmentation that gives hair (SelfieSegmentation). Both change slowly over a few frames of a
25 fps recording, so both can run on keyframes only:

- :class:`KeyframeDetector` detects every ``k``-th frame (the keyframes) and gives each frame
  between two keyframes the linear interpolation of their detections (box and landmarks). The
  pass is offline, so the later keyframe is known: this interpolates, it does not extrapolate.
  Where the two keyframes disagree — one has a face and the other not, or the box moved or
  grew so much that their overlap (IoU) is under ``min_iou`` — every frame of that stretch is
  detected as the reference does, so face/no-face boundaries and fast moves stay exact to the
  frame. Where neither has a face, the frames between have none either (a face seen for fewer
  than ``k`` frames between two face-less keyframes is missed: it could not fill a clip anyway);
- :class:`KeyframeParser` segments every ``n``-th crop and moves that mask into the crops
  between by the change of the crop window (a scale and a shift: the crop follows the face, so
  hair and shoulders move with it), segmenting afresh when the window moved too far. The face
  pass segments on every other keyframe (``n = HAIR_KEYFRAMES * k``): hair moves less than the
  landmarks, and a segmentation costs as much as a detection.

``k = 1`` is the reference: detect (and segment) every frame. The two are bound by the tests
``tests/face/test_keyframes.py`` (on the real videos: median box IoU and region-map agreement
against the reference).
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from fmae.face.backend import Detection, FaceBackend

MIN_IOU = 0.7
"""Overlap two keyframes' boxes need for the frames between them to be interpolated."""
HAIR_KEYFRAMES = 2
"""Keyframes per segmentation in the face pass: :class:`KeyframeParser` runs every ``2 * k`` crops.
Measured on the real videos (region maps against the every-frame pass, mean of pixels, k = 4):
WolfgangLanger 0.974 against 0.979 segmenting every ``k``, single_face 0.989 against 0.991,
noface_face 0.990 against 0.994, for about a tenth of the pass's time."""
MIN_MASK_IOU = 0.8
"""Overlap a crop window needs with its keyframe's window for that keyframe's segmentation to be reused."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``float [..., 4]`` ``x0, y0, x1, y1`` (broadcast): ``float64 [...]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def interpolate(a: Detection, b: Detection, steps: int) -> list[Detection]:
    """The ``steps`` detections evenly between ``a`` and ``b`` (both excluded): box and landmarks
    linearly interpolated, ``float32`` like the inputs."""
    out = []
    for i in range(1, steps + 1):
        w = np.float32(i / (steps + 1))
        out.append(Detection((1 - w) * a.box + w * b.box, (1 - w) * a.landmarks + w * b.landmarks))
    return out


class KeyframeDetector:
    """:meth:`FaceBackend.detect` on every ``every``-th frame, interpolated between (module docstring).

    Feed the frames of one video in order to :meth:`push`; it returns the detections (or
    ``None``) of the frames it has decided, in order, which lag up to ``every - 1`` frames
    behind; :meth:`finish` decides the rest. ``every = 1`` detects every frame. It holds at most
    ``every`` frames. :attr:`detected` counts the frames the backend saw. to_array: turns what
    :meth:`push` is given into the ``uint8 [H, W, 3]`` frame, called only on the frames it
    detects on (the pass gives it decoded, unconverted frames).
    """

    def __init__(
        self,
        backend: FaceBackend,
        every: int,
        min_iou: float = MIN_IOU,
        to_array: Callable[[Any], np.ndarray] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.backend, self.every, self.min_iou = backend, every, min_iou
        self.to_array = to_array
        self.start_video()

    def start_video(self) -> None:
        """Forget the last video (and reset the backend's tracking)."""
        self.backend.start_video()
        self._pending: list[np.ndarray] = []
        self._last: Detection | None = None
        self._started = False
        self.detected = 0

    def _detect(self, frame: np.ndarray) -> Detection | None:
        self.detected += 1
        return self.backend.detect(frame if self.to_array is None else self.to_array(frame))

    def push(self, frame: np.ndarray) -> list[Detection | None]:
        """Take the next frame ``uint8 [H, W, 3]``; returns the detections now decided."""
        if not self._started:  # the first frame is a keyframe
            self._started = True
            self._last = self._detect(frame)
            return [self._last]
        self._pending.append(frame)
        return self._close() if len(self._pending) == self.every else []

    def finish(self) -> list[Detection | None]:
        """The detections of the frames still held (the last one becomes a keyframe)."""
        return self._close() if self._pending else []

    def _close(self) -> list[Detection | None]:
        """Detect the last held frame; fill or detect the ones before it."""
        frames, self._pending = self._pending, []
        key = self._detect(frames[-1])
        before = self._last
        if len(frames) == 1:
            out = [key]
        elif before is not None and key is not None and box_iou(before.box, key.box) >= self.min_iou:
            out = [*interpolate(before, key, len(frames) - 1), key]
        elif before is None and key is None:  # no face at either end: none between
            out = [None] * len(frames)
        else:  # the keyframes disagree: detect the stretch as the reference does, in order
            out = [self._detect(f) for f in frames]
        self._last = out[-1]
        return out


def detect_every(backend: FaceBackend, frames, every: int, min_iou: float = MIN_IOU) -> list[Detection | None]:
    """Detections of all ``frames`` (an iterable of one video's ``uint8 [H, W, 3]``) with
    :class:`KeyframeDetector` (``every = 1``: the backend on every frame, the reference)."""
    detector = KeyframeDetector(backend, every, min_iou)
    out: list[Detection | None] = []
    for frame in frames:
        out += detector.push(frame)
    return out + detector.finish()


def move_mask(mask: np.ndarray, src_window: np.ndarray, dst_window: np.ndarray) -> np.ndarray:
    """A crop's mask ``bool/uint8 [S, S]`` (of crop window ``src_window``, ``x0, y0, x1, y1`` in
    frame pixels) moved into the crop of ``dst_window``: ``bool [S, S]``, False where the source
    crop did not reach. Nearest-neighbour, continuous coordinates (:mod:`fmae.face.tracking`)."""
    S = mask.shape[0]
    src, dst = np.asarray(src_window, np.float64), np.asarray(dst_window, np.float64)
    scale = (src[2] - src[0]) / (dst[2] - dst[0])  # dst crop pixels per src crop pixel
    shift = (src[:2] - dst[:2]) * (S / (dst[2] - dst[0]))
    # cv2's pixel centres are integers: u_c = u - 0.5, so the offset gains 0.5 * (scale - 1).
    offset = shift + 0.5 * (scale - 1)
    M = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float64)
    moved = cv2.warpAffine(mask.astype(np.uint8), M, (S, S), flags=cv2.INTER_NEAREST, borderValue=0)
    return moved.astype(bool)


class KeyframeParser:
    """Region maps of one video's crops, in order, segmenting every ``every``-th frame (module docstring).

    backend: its :meth:`FaceBackend.segment` (the slow part of parsing) and
    :meth:`FaceBackend.regions` are used when it splits its parse so
    (:attr:`FaceBackend.segments`), else :meth:`FaceBackend.parse` on every crop. Call it as
    ``parser(t, crop, landmarks, window)`` for the parsed frames ``t`` in order (frames may be
    skipped: a mask is reused only within ``every`` frames of the one it was made on);
    ``every = 1`` segments every crop (the reference, equal to ``backend.parse``).
    :attr:`segmented` counts the crops that were segmented.
    """

    def __init__(self, backend: FaceBackend, every: int, min_iou: float = MIN_MASK_IOU) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.backend, self.every, self.min_iou = backend, every, min_iou
        self._mask: np.ndarray | None = None
        self._window: np.ndarray | None = None
        self._made_at = 0
        self.segmented = 0

    def __call__(self, t: int, crop: np.ndarray, landmarks: np.ndarray, window: np.ndarray) -> np.ndarray:
        """``uint8 [S, S]`` regions of frame ``t``'s ``crop`` (``uint8 [S, S, 3]``), with its
        landmarks in crop coordinates and its crop ``window`` (frame pixels)."""
        if not self.backend.segments:
            return self.backend.parse(crop, landmarks)
        window = np.asarray(window, np.float64)
        fresh = (
            self._mask is None
            or not 0 <= t - self._made_at < self.every
            or float(box_iou(self._window, window)) < self.min_iou
        )
        if fresh:
            self._mask, self._window, self._made_at = self.backend.segment(crop), window, t
            self.segmented += 1
            mask = self._mask
        else:
            mask = move_mask(self._mask, self._window, window)
        return self.backend.regions(crop, landmarks, mask)
