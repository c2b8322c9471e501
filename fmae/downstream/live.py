"""Engagement while it happens: ``python -m fmae.predict --live SOURCE``.

The offline pipeline (:mod:`fmae.downstream.predict`) reads a whole recording twice; a
camera gives one frame at a time and will not wait. The live loop keeps the offline
pipeline's every step and rule, made incremental, and keeps up by dropping frames:

1. **Source** (:func:`open_source`): a camera index (``0``), a stream URL
   (``rtsp://…``, ``http://…``) or a video file, which is read at its own frame rate
   (frame ``i`` is handed over ``i / fps`` seconds after the first, as a camera would
   deliver it; so is a URL that has a length). What cannot be opened is a ``ValueError``
   (``FileNotFoundError`` for a missing file) before anything runs.
2. **Reader** (:class:`FrameReader`): a thread reads the source into a queue, and the loop
   takes the frames in order; a waiting frame older than ``max_age`` (a window's length)
   that has a newer one behind it is dropped and counted, so the frame the loop takes is
   never more than a window old, however slow the work on each frame (the pause of a
   window's scoring is absorbed without a drop when the loop is fast enough on average).
   Each frame keeps its source index (its time is ``index / fps``) and when it arrived.
3. **Faces**: the offline face pass's backend and settings
   (:class:`fmae.data.face_pass.PreprocessConfig`, MediaPipe). One face: its keyframe
   detector (:class:`fmae.face.keyframes.KeyframeDetector`, detections up to ``k - 1``
   frames late); ``--faces all``: every frame through the backend, and
   :class:`fmae.face.multi_tracking.LivePeople` says who each face is, frame by frame.
   Each person's crops come from :class:`LiveCropper`: the offline gap filling, box
   smoothing (a centred window, so a crop is made ``smooth // 2`` frames after its frame),
   square windows and crops of :mod:`fmae.face.tracking`, and the MJPEG round trip of the
   offline crop cache (the probe's clips went through it too), so that without drops a
   crop is the offline pass's crop, byte for byte.
4. **Windows** (:class:`LiveWindows`): the offline windows (:func:`fmae.downstream.predict.window_plan`:
   ``num_frames × temporal_stride`` frames every hop); a window is decided as soon as its
   last frame's crop is made: ``no_face`` below ``min_face`` (not encoded), else encoded
   and probed (:func:`fmae.downstream.windows.encode_frames`, :func:`fmae.downstream.scores.score_items`).
   A dropped frame has no crop: the clip takes the window's nearest earlier crop (or
   later, at its start), the face fraction counts the frames seen, and a window that lost
   more than half its frames is skipped and counted, not guessed. A window that cannot be
   decided within 2 window lengths of its last frame is skipped and counted as late.
5. **Rows**: each decided window is printed at once (time, person, level and confidence
   or score, face fraction, dropped frames, latency) and appended to ``timeline.csv``
   in the columns the offline predict writes (:func:`fmae.downstream.predict.timeline_columns`;
   ``person`` last with ``--faces all``), flushed row by row. **Latency** is the time
   from the arrival of a window's last frame to its row.

Ctrl-C (or the end of a file) ends the loop cleanly: the reader stops, the frames already
taken are finished and the windows they complete decided, and the summary (frames read and
dropped, windows decided, skipped and late, real-time factor, median and maximum latency) is
printed and written to ``live.json``. The **real-time factor** is the source time of the
frames the loop processed (frames processed / fps) over the time it spent on them (waiting
for the next frame not counted): the speed of its work against the source's clock. At 1 or
more it keeps up and nothing needs dropping; below 1 it drops about ``1 - factor`` of the
frames.
"""

from __future__ import annotations

import collections
import csv
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, TextIO

import av
import cv2
import numpy as np
import torch

from fmae.data.clips import frame_rate, rgb_array
from fmae.data.face_pass import PreprocessConfig
from fmae.data.people import person_name
from fmae.downstream.predict import NO_FACE, PredictConfig, config_yaml, hop_frames, load_predictor, timeline_columns
from fmae.downstream.scores import score_items
from fmae.downstream.windows import encode_frames
from fmae.face.identity import face_descriptor
from fmae.face.keyframes import KeyframeDetector
from fmae.face.multi_tracking import LivePeople, TrackerConfig
from fmae.face.tracking import crop_frame, crop_windows, jumps, smooth
from fmae.runtime.device import resolve_device, resolve_dtype

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
"""Seconds a stream URL may take to open, or to give its next packet, before it is given up."""
DEFAULT_CAMERA_FPS = 30.0
"""A camera's frame rate when it does not say."""
RETIRE = 3
"""With ``--faces all``, a person not seen for this many window lengths stops being cropped and
gets no rows (they would all be ``no_face``) until they come back: a long session's cost does not
grow with everyone it ever saw (a passer-by, a false detection)."""


# -------------------------------------------------------------------------- source


class Source:
    """An opened video source: ``fps``, ``paced`` (a file: handed over at its own rate), ``name``,
    and its frames (:meth:`frames`, ``uint8 [H, W, 3]`` RGB); open it with :func:`open_source`."""

    def __init__(self, name: str, fps: float, paced: bool, frames: Iterator[np.ndarray], close: Callable[[], None]):
        self.name, self.fps, self.paced = name, float(fps), paced
        self._frames, self._close = frames, close
        self._closing = threading.Lock()

    def frames(self) -> Iterator[np.ndarray]:
        return self._frames

    def close(self) -> None:
        """Close it (again: nothing happens)."""
        with self._closing:
            close, self._close = self._close, None
        if close is not None:
            close()


def open_source(source: str) -> Source:
    """Open ``source``: a camera index (digits), a URL (``scheme://…``) or a video file.

    A file is read at its own frame rate (:attr:`Source.paced`), and so is a URL that has a length
    (a recording served over HTTP); a live stream and a camera as they give frames. Its first
    frame is read here, so a source that opens but gives no frame fails here too.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError``, saying what was tried,
    for a camera that cannot be opened, a stream that cannot be reached and a file that is not
    a video.
    """
    text = str(source).strip()
    if text.isdigit():
        return _open_camera(int(text))
    if "://" in text:
        return _open_av(text, paced=None, what="the stream")
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no video {path} (a live source is a camera index, a stream URL or a video file)")
    return _open_av(str(path), paced=True, what="the file")


def _open_camera(index: int) -> Source:
    # OpenCV's own lines about a camera it cannot open would stand beside our one error line.
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent
    try:
        capture = cv2.VideoCapture(index)
        ok, first = capture.read() if capture.isOpened() else (False, None)
    finally:
        cv2.setLogLevel(level)
    if not ok or first is None:
        capture.release()
        raise ValueError(f"camera {index} cannot be opened (no such camera, or it is busy)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps <= 1000 else DEFAULT_CAMERA_FPS

    def frames() -> Iterator[np.ndarray]:
        frame = first
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = capture.read()
            frame = frame if ok else None

    return Source(f"camera {index}", fps, False, frames(), capture.release)


def _open_av(url: str, paced: bool | None, what: str) -> Source:
    """A file or stream through FFmpeg; ``paced`` None: paced when it has a length (a recording
    served over HTTP is read at its own rate, a live stream as it comes)."""
    try:
        container = av.open(url, timeout=OPEN_TIMEOUT_S)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ValueError(f"{url}: cannot open {what}: {e}") from e
    if paced is None:
        paced = bool(container.duration)
    if not container.streams.video:
        container.close()
        raise ValueError(f"{url}: {what} has no video stream")
    stream = container.streams.video[0]
    fps, _ = frame_rate(stream)
    decoded = (rgb_array(f) for packet in container.demux(stream) for f in packet.decode())
    try:
        first = next(decoded)
    except StopIteration:
        container.close()
        raise ValueError(f"{url}: {what} has no frames") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        container.close()
        raise ValueError(f"{url}: {what} is not a readable video: {e}") from e

    def frames() -> Iterator[np.ndarray]:
        yield first
        try:
            yield from decoded
        except (av.error.FFmpegError, OSError, ValueError) as e:  # a damaged tail: the good frames were given
            log.warning("%s: decoding stopped: %s", url, e)

    return Source(url, float(fps), paced, frames(), container.close)


# -------------------------------------------------------------------------- reader


@dataclass
class Frame:
    """A frame the reader handed over."""

    index: int
    """Source index: its time is ``index / fps``."""
    arrived: float
    """``time.monotonic()`` when it came (for a paced file: when it was due)."""
    rgb: np.ndarray


class FrameReader:
    """A thread that reads ``source`` into a queue; :meth:`get` takes its frames in order, but drops
    (and counts in :attr:`dropped`) every waiting frame older than ``max_age`` seconds that has a
    newer one behind it, so that however slow the work on each frame, the frame taken is at most
    ``max_age`` old (a queue bounded by a count instead would hold a backlog of ``count`` times the
    work per frame). The queue also never holds more than ``capacity`` frames (the oldest goes).
    Use it in a ``with`` block."""

    ARRIVALS = 1 << 14
    """Frames whose arrival time is remembered (:meth:`arrival`)."""

    def __init__(self, source: Source, max_age: float = math.inf, capacity: int | None = None) -> None:
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds, got {max_age}")
        if capacity is None:  # twice what max_age lets wait: only frames that would go anyway
            capacity = max(4, math.ceil(2 * max_age * source.fps)) if math.isfinite(max_age) else 1 << 30
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.source = source
        self.queue: collections.deque[Frame] = collections.deque()
        self.max_age, self.capacity = max_age, capacity
        self.read = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.finished = False
        self._arrivals = np.zeros(self.ARRIVALS)
        self._stop = threading.Event()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="fmae-live-reader", daemon=True)
        self.started = 0.0

    def __enter__(self) -> FrameReader:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop reading (the frames waiting stay for :meth:`get`); the reading thread closes the
        source when its read in hand returns (a source is never closed under a read)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=OPEN_TIMEOUT_S)

    def arrival(self, index: int) -> float:
        """When frame ``index`` (read, whether handed over or dropped) arrived."""
        return float(self._arrivals[index % self.ARRIVALS])

    def _run(self) -> None:
        period = 1.0 / self.source.fps
        try:
            for i, rgb in enumerate(self.source.frames()):
                if self._stop.is_set():
                    break
                if self.source.paced:
                    delay = self.started + i * period - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                now = time.monotonic()
                with self._ready:
                    self._arrivals[i % self.ARRIVALS] = now
                    if len(self.queue) == self.capacity:
                        self.queue.popleft()
                        self.dropped += 1
                    self.queue.append(Frame(i, now, rgb))
                    self.read = i + 1
                    self._ready.notify()
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
            self.error = e
        finally:
            self.source.close()
            with self._ready:
                self.finished = True
                self._ready.notify()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame; ``None`` at the source's end (or after :meth:`stop`, once the
        queue is empty, or when ``timeout`` passes). Raises what the reading thread raised."""
        with self._ready:
            while not self.queue and not self.finished and not self._stop.is_set():
                if not self._ready.wait(timeout) and timeout is not None:
                    break
            now = time.monotonic()
            while len(self.queue) > 1 and now - self.queue[0].arrived > self.max_age:
                self.queue.popleft()
                self.dropped += 1
            if self.queue:
                return self.queue.popleft()
            if self.error is not None:
                raise self.error
            return None


# -------------------------------------------------------------------------- crops


class MjpegRoundTrip:
    """A crop through the MJPEG encoder and decoder of the offline crop cache
    (:class:`fmae.data.video_writer.VideoWriter`, ``yuvj420p`` at ``qscale``): the pixels the
    offline windows read back (the same bytes: ``tests/downstream/test_live.py`` binds them)."""

    def __init__(self, size: int, qscale: int) -> None:
        self._enc = av.CodecContext.create("mjpeg", "w")
        self._enc.width = self._enc.height = size
        self._enc.pix_fmt = "yuvj420p"
        self._enc.time_base = Fraction(1, 25)
        self._enc.options = {"qmin": str(qscale), "qmax": str(qscale)}
        self._dec = av.CodecContext.create("mjpeg", "r")
        self._pts = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._pts
        self._pts += 1
        out = [rgb_array(d) for packet in self._enc.encode(frame) for d in self._dec.decode(packet)]
        if len(out) != 1:
            raise RuntimeError(f"the MJPEG round trip gave {len(out)} frames for one")
        return out[0]


@dataclass
class Crop:
    """One frame of one person, made by :class:`LiveCropper`."""

    index: int
    crop: np.ndarray | None
    """``uint8 [S, S, 3]``; ``None`` for a dropped frame, and for frames long before anyone was seen."""
    has_face: bool
    dropped: bool


class LiveCropper:
    """One face's (person's) crops, frame by frame, as the offline pass makes them
    (:mod:`fmae.face.tracking`): a frame without a detection keeps the last box (frames before
    the first detection, its box), boxes are averaged over the centred ``smooth`` window (with
    ``breaks``, never across :func:`fmae.face.tracking.jumps`, as for a person of ``--faces all``),
    squared with ``margin`` and cut out at ``size`` (``fast``: the two-step resize of the keyframe
    pass, :func:`fmae.face.tracking.crop_frame`).

    :meth:`push` takes frames in order and returns the crops that became ready: ``smooth // 2``
    frames behind, or, before the first detection, when it comes (at most ``keep`` frames before
    it keep their pixels: a window further back holds no face). ``first`` is the first frame's
    index; :meth:`finish` returns the rest at the source's end."""

    def __init__(
        self,
        frame_hw: tuple[int, int],
        size: int,
        margin: float,
        window: int,
        round_trip: Callable[[np.ndarray], np.ndarray] | None,
        keep: int,
        breaks: bool = False,
        first: int = 0,
        fast: bool = False,
    ) -> None:
        self.hw, self.size, self.margin, self.half, self.fast = frame_hw, size, margin, window // 2, fast
        self.round_trip, self.keep, self.breaks = round_trip, max(keep, 1), breaks
        self.origin = first
        self.next = first  # the next frame to be made
        self.pushed = first
        self._rgb: dict[int, np.ndarray | None] = {}
        self._filled: dict[int, np.ndarray] = {}  # boxes, gaps filled
        self._seen: dict[int, bool] = {}
        self._last: np.ndarray | None = None

    def push(self, index: int, rgb: np.ndarray | None, box: np.ndarray | None) -> list[Crop]:
        """Frame ``index`` (the one after the last pushed): its pixels (``None``: dropped) and its
        face box (``float [4]``; ``None`` or NaN: no face). Returns the crops made ready."""
        if index != self.pushed:
            raise ValueError(f"frames come in order: expected {self.pushed}, got {index}")
        self.pushed += 1
        good = box is not None and not np.isnan(box).any()
        self._rgb[index], self._seen[index] = rgb, good
        if good:
            self._last = np.asarray(box, np.float32)
            for k in range(self.next, index + 1):  # the frames before the first detection take it
                self._filled.setdefault(k, self._last)
        elif self._last is not None:
            self._filled[index] = self._last
        out = []
        if self._last is None:  # nobody yet: let go of frames no window with a face can reach
            while self.pushed - self.next > self.keep:
                out.append(self._make(self.next, None))
        while self.next in self._filled and (self.next + self.half) in self._filled:
            out.append(self._make(self.next, self._ready_box(self.next, end=None)))
        return out

    def finish(self) -> list[Crop]:
        """The crops still waiting, at the source's end (the last ``smooth // 2`` frames, smoothed
        over a window that shrinks towards the end, as offline)."""
        out = []
        end = self.pushed - 1
        while self.next <= end:
            box = self._ready_box(self.next, end) if self.next in self._filled else None
            out.append(self._make(self.next, box))
        return out

    def _ready_box(self, t: int, end: int | None) -> np.ndarray:
        """Frame ``t``'s smoothed box (``end``: the last frame, once the source has ended). Frames
        before :attr:`origin` (a person who first came later) count as holding its first box, as
        the offline pass fills them."""

        def filled(k: int) -> np.ndarray:
            k = max(k, self.origin)
            # Frames let go before the first detection all held its box: the earliest kept one.
            return self._filled[k] if k in self._filled else self._filled[min(self._filled)]

        lo, hi = max(t - self.half, 0), t + self.half if end is None else min(t + self.half, end)
        if self.breaks:  # only within t's stretch between two jumps
            stretch = np.stack([filled(k) for k in range(lo, hi + 1)])
            cuts = (np.flatnonzero(jumps(stretch)[1:]) + 1 + lo).tolist()
            lo = max([lo, *[c for c in cuts if c <= t]])
            hi = min([hi, *[c - 1 for c in cuts if c > t]])
        h = min(t - lo, hi - t)
        return smooth(np.stack([filled(k) for k in range(t - h, t + h + 1)]), 2 * h + 1)[h]

    def _make(self, t: int, box: np.ndarray | None) -> Crop:
        rgb = self._rgb.pop(t, None)
        crop = None
        if rgb is not None and box is not None:
            window = crop_windows(box[None], self.hw, self.margin)[0]
            crop = crop_frame(rgb, window, self.size, fast=self.fast)
            crop = self.round_trip(crop) if self.round_trip is not None else crop
        made = Crop(t, crop, self._seen.pop(t, False), rgb is None)
        for k in [k for k in self._filled if self.origin < k < t - self.half]:
            del self._filled[k]
        self.next = t + 1
        return made


# ------------------------------------------------------------------------- windows


@dataclass
class Window:
    """A window ready to decide: its frames' crops (``None`` where dropped) and facts."""

    person: str
    start: int
    span: int
    crops: list[np.ndarray | None]
    has_face: np.ndarray
    """``bool [span]``."""
    dropped: np.ndarray
    """``bool [span]``: frames the reader dropped."""

    @property
    def seen(self) -> int:
        return int((~self.dropped).sum())

    @property
    def face_fraction(self) -> float:
        """Face frames over the frames seen (offline: over all, which are all seen)."""
        return float(self.has_face.sum()) / max(self.seen, 1)

    def clip(self, offsets: np.ndarray) -> np.ndarray:
        """``uint8 [len(offsets), S, S, 3]``: the clip's frames, a dropped one replaced by the
        window's nearest earlier crop (or, with none before it, the nearest later)."""
        have = [i for i, c in enumerate(self.crops) if c is not None]
        out = []
        for o in offsets.tolist():
            before = [i for i in have if i <= o]
            out.append(self.crops[before[-1] if before else have[0]])
        return np.stack(out)


class LiveWindows:
    """One person's windows over the crops of a :class:`LiveCropper`: every ``hop`` frames a
    window of ``span`` frames, returned by :meth:`push` when its last crop comes (the offline
    windows: :func:`fmae.downstream.predict.window_plan`)."""

    def __init__(self, person: str, span: int, hop: int) -> None:
        self.person, self.span, self.hop = person, span, hop
        self._held: collections.deque[Crop] = collections.deque(maxlen=span)

    def push(self, crop: Crop) -> Window | None:
        self._held.append(crop)
        start = crop.index - self.span + 1
        if start < 0 or start % self.hop or len(self._held) < self.span or self._held[0].index != start:
            return None
        held = list(self._held)
        return Window(
            self.person,
            start,
            self.span,
            [c.crop for c in held],
            np.array([c.has_face for c in held]),
            np.array([c.dropped for c in held]),
        )


def first_window(index: int, span: int, hop: int) -> int:
    """The start of the first window (every ``hop`` frames from 0, ``span`` long) that holds frame ``index``."""
    return max(0, -(-(index - span + 1) // hop) * hop)


# ------------------------------------------------------------------------ the loop


@dataclass
class Row:
    """A decided window, as printed and written."""

    person: str
    start_s: float
    end_s: float
    face_fraction: float
    level: str
    """The class, ``no_face``, or a regression's score as text."""
    confidence: float | None
    cells: list[str]
    """Its ``timeline.csv`` row (as :func:`fmae.downstream.predict.timeline_rows`; ``person`` last
    with ``--faces all``)."""
    dropped: int
    """Frames of the window that the reader dropped."""
    last_arrived: float
    """When the window's last frame arrived (``time.monotonic()``)."""
    latency_s: float = math.nan
    """From :attr:`last_arrived` to the row's going out."""


@dataclass
class LiveStats:
    """What a live run did (:meth:`summary`)."""

    fps: float
    frames_read: int = 0
    frames_dropped: int = 0
    frames_processed: int = 0
    windows: int = 0
    windows_skipped: int = 0
    windows_late: int = 0
    busy_s: float = 0.0
    wall_s: float = 0.0
    people: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """``frames_read``, ``frames_dropped``, ``windows`` (decided), ``windows_skipped`` (more than
        half their frames dropped), ``windows_late`` (not decided by the deadline),
        ``real_time_factor`` (source seconds of the frames processed over the seconds spent on
        them: the speed of the work; at least 1, nothing needs dropping),
        ``latency_median_s``, ``latency_max_s`` and the rest of the counts."""
        lat = np.array(self.latencies)
        source_s = self.frames_read / self.fps if self.fps else 0.0
        worked_s = self.frames_processed / self.fps if self.fps else 0.0
        return {
            "fps": round(self.fps, 3),
            "frames_read": self.frames_read,
            "frames_dropped": self.frames_dropped,
            "frames_processed": self.frames_processed,
            "windows": self.windows,
            "windows_skipped": self.windows_skipped,
            "windows_late": self.windows_late,
            "people": self.people,
            "source_s": round(source_s, 3),
            "wall_s": round(self.wall_s, 3),
            "busy_s": round(self.busy_s, 3),
            "real_time_factor": round(worked_s / self.busy_s, 3) if self.busy_s > 0 else None,
            "latency_median_s": round(float(np.median(lat)), 4) if len(lat) else None,
            "latency_max_s": round(float(lat.max()), 4) if len(lat) else None,
        }


Scorer = Callable[[list[np.ndarray]], np.ndarray]
"""Clips ``uint8 [T, S, S, 3]`` → their scores: ``float32 [B, C]`` probabilities or ``[B]`` scores."""


class LiveLoop:
    """The live loop over one source (see the module's text).

    backend: a face backend (``detect``, ``detect_all`` with ``faces="all"``); score: a
    :data:`Scorer`; meta: the probe's (``kind``, ``class_names``, ``num_frames``,
    ``temporal_stride``); emit: called with each :class:`Row` as it is decided.
    """

    def __init__(
        self,
        reader: FrameReader,
        backend,
        score: Scorer,
        meta: dict,
        emit: Callable[[Row], None],
        face_pass: PreprocessConfig,
        hop_frames: int,
        min_face: float,
        deadline_windows: float = 2.0,
    ) -> None:
        self.reader, self.backend, self.score, self.meta, self.emit = reader, backend, score, meta, emit
        self.fps = reader.source.fps
        self.stride, n = int(meta["temporal_stride"]), int(meta["num_frames"])
        self.span, self.hop = n * self.stride, hop_frames
        self.offsets = self.stride * np.arange(n, dtype=np.int64)
        self.face_pass, self.min_face, self.max_faces = face_pass, min_face, face_pass.max_faces
        self.stats = LiveStats(self.fps)
        min_frames = max(1, round(face_pass.min_track * self.fps))
        self.people = LivePeople(TrackerConfig(min_frames=min_frames)) if face_pass.faces == "all" else None
        # One face: the offline pass's keyframe detector (every k-th frame detected, the frames between
        # interpolated), whose detections lag up to k - 1 frames; the frames wait for them here.
        self.keyframes = KeyframeDetector(backend, face_pass.keyframes) if self.people is None else None
        self._waiting: collections.deque[list] = collections.deque()  # [index, rgb, decided, box]
        self._croppers: dict[int, LiveCropper] = {}
        self._windows: dict[int, LiveWindows] = {}
        self._names: dict[int, str] = {}
        self._held_rows: dict[int, list[Row]] = {}
        self._last_seen: dict[int, int] = {}  # person -> the last frame they were detected in
        self._recent: collections.deque[tuple[int, np.ndarray]] = collections.deque(maxlen=self.span + 1)
        self._hw: tuple[int, int] | None = None
        self._next = 0
        self._warned_many = False
        self.deadline = deadline_windows * self.span / self.fps
        """Seconds after its last frame by which a window must be decided, or be skipped as late."""
        self._score_s = 0.0  # how long the last window's scoring took
        self._scored_at: dict[int, float] = {}  # person -> when their last window was scored

    def warm_up(self) -> None:
        """Score one blank clip before the source starts: the first real window is then not slowed by
        the encoder's first call, and the deadline has a scoring time to go by."""
        size = self.face_pass.size
        started = time.monotonic()
        self.score([np.zeros((len(self.offsets), size, size, 3), np.uint8)])
        self._score_s = time.monotonic() - started

    # -- one frame

    def step(self, frame: Frame) -> None:
        """Take one frame from the reader (the frames it dropped before it are pushed as dropped)."""
        if self._hw is None:
            self._hw = frame.rgb.shape[:2]
            if self.people is None:  # one face: its crops and windows from the first frame, as offline
                self._start_person(0, frame.index)
        if self.people is None:
            self._waiting.extend([i, None, True, None] for i in range(self._next, frame.index))  # dropped
            self._waiting.append([frame.index, frame.rgb, False, None])
            self._decided(self.keyframes.push(frame.rgb))
        else:
            for missing in range(self._next, frame.index):
                self._push_frame(missing, None, {})
            self._push_frame(frame.index, frame.rgb, self._who(frame.rgb, frame.index))
        self._next = frame.index + 1
        self.stats.frames_processed += 1

    def _decided(self, detections: list) -> None:
        """One face: the keyframe detector's detections, given to the frames waiting for them in
        order; the frames at the front whose detection is known go on to the crops."""
        undecided = (entry for entry in self._waiting if not entry[2])
        for det, entry in zip(detections, undecided):
            entry[2], entry[3] = True, det.box if det is not None else None
        while self._waiting and self._waiting[0][2]:
            index, rgb, _, box = self._waiting.popleft()
            self._push_frame(index, rgb, {0: box} if box is not None else {})

    def _who(self, rgb: np.ndarray, index: int) -> dict[int, np.ndarray]:
        dets = self.backend.detect_all(rgb)
        boxes = np.array([d.box for d in dets], np.float32).reshape(len(dets), 4)
        looks = np.array([face_descriptor(rgb, d.box, d.landmarks) for d in dets], np.float32)
        ids = self.people.step(boxes, looks.reshape(len(dets), -1), frame=index)
        return {int(p): boxes[i] for i, p in enumerate(ids) if p >= 0}

    def _push_frame(self, index: int, rgb: np.ndarray | None, boxes: dict[int, np.ndarray]) -> None:
        self._recent.append((index, rgb))
        for p in boxes:
            self._last_seen[p] = index
            if p not in self._croppers:
                self._start_person(p, index)
        if self.people is not None:  # people gone for RETIRE windows cost nothing until they come back
            for p in [p for p in self._croppers if index - self._last_seen[p] > RETIRE * self.span]:
                del self._croppers[p], self._windows[p]
                self._held_rows.pop(p, None)
        windows = []
        for p, cropper in self._croppers.items():
            for crop in cropper.push(index, rgb, boxes.get(p)):
                window = self._windows[p].push(crop)
                if window is not None:
                    windows.append((p, window))
        if windows:
            self._decide(windows)

    def _start_person(self, p: int, index: int) -> None:
        """A new face: its crops start at the first window holding ``index``, the frames before
        ``index`` that are still held taken as frames without it."""
        first = first_window(index, self.span, self.hop) if self.people is not None else index
        held = {i: rgb for i, rgb in self._recent if i < index}
        first = max(first, min(held, default=index))
        f = self.face_pass
        cropper = LiveCropper(
            self._hw,
            f.size,
            f.margin,
            f.smooth,
            MjpegRoundTrip(f.size, f.qscale),
            keep=self.span,
            breaks=self.people is not None,
            first=first,
            fast=self.keyframes is not None and f.keyframes > 1,  # as the offline pass crops
        )
        self._croppers[p] = cropper
        self._windows[p] = LiveWindows("face", self.span, self.hop)
        for i in range(first, index):
            for crop in cropper.push(i, held.get(i), None):
                self._windows[p].push(crop)

    def finish(self) -> None:
        """The source ended: the last crops are made and the windows they complete decided."""
        if self.keyframes is not None:
            self._decided(self.keyframes.finish())
        windows = []
        for p, cropper in self._croppers.items():
            for i in range(cropper.pushed, self._next):
                cropper.push(i, None, None)
            for crop in cropper.finish():
                window = self._windows[p].push(crop)
                if window is not None:
                    windows.append((p, window))
        if windows:
            self._decide(windows)

    # -- windows

    def _name(self, p: int) -> str | None:
        """The person's name once confirmed (seen long enough), else ``None``; ``face`` with one face."""
        if self.people is None:
            return "face"
        if p not in self._names and self.people.confirmed(p):
            self._names[p] = person_name(len(self._names))
            self.stats.people = len(self._names)
            if len(self._names) > self.max_faces and not self._warned_many:
                self._warned_many = True
                log.warning("more than max_faces %d people: the newest are not scored", self.max_faces)
        return self._names.get(p)

    def _decide(self, windows: list[tuple[int, Window]]) -> None:
        """Decide the windows that became complete together (one per person), each row sent as soon
        as it is scored. Windows without enough face go first (nothing to compute), then the people
        least recently scored; a window that would be decided later than :attr:`deadline` after its
        last frame (by the time the last scoring took) is skipped and counted as late, so that many
        people cost rows, not a growing delay; a row that is past it when made is late too. A
        person's rows wait until they are confirmed (:meth:`fmae.face.multi_tracking.LivePeople.confirmed`)."""
        due = []
        for p, w in windows:
            if w.seen * 2 < w.span:
                self.stats.windows_skipped += 1
                continue
            name = self._name(p)
            if name is not None and self.people is not None and list(self._names).index(p) >= self.max_faces:
                continue
            scored = w.face_fraction >= self.min_face and any(c is not None for c in w.crops)
            due.append((scored, self._scored_at.get(p, -math.inf), p, name, w))
        # no_face windows first (nothing to compute), then the people least recently scored
        for scored, _, p, name, w in sorted(due, key=lambda d: d[:3]):
            s = None
            last = self.reader.arrival(w.start + w.span - 1)
            if time.monotonic() - last + (self._score_s if scored else 0.0) > self.deadline:
                self.stats.windows_late += 1
                continue
            if scored:
                started = time.monotonic()
                s = self.score([w.clip(self.offsets)])[0]
                self._score_s = time.monotonic() - started
                self._scored_at[p] = started
            row = self._row(name, w, s)
            if name is None:  # held until confirmed; those already past the deadline are late
                held = self._held_rows.setdefault(p, [])
                now = time.monotonic()
                self.stats.windows_late += sum(now - r.last_arrived > self.deadline for r in held)
                held[:] = [r for r in held if now - r.last_arrived <= self.deadline] + [row]
                continue
            for held in self._held_rows.pop(p, []):  # the rows of a person just confirmed
                self._send(held, name)
            self._send(row, name)

    def _row(self, name: str | None, w: Window, s: np.ndarray | None) -> Row:
        classify = self.meta["kind"] == "classification"
        start_s, end_s = w.start / self.fps, (w.start + w.span) / self.fps
        cells = [f"{start_s:.3f}", f"{end_s:.3f}", f"{w.face_fraction:.3f}"]
        if s is None:
            level, confidence = NO_FACE, None
            cells += [NO_FACE, "", *[""] * len(self.meta["class_names"])] if classify else [NO_FACE]
        elif classify:
            level, confidence = self.meta["class_names"][int(np.argmax(s))], float(np.max(s))
            cells += [level, f"{confidence:.4f}", *[f"{q:.4f}" for q in s]]
        else:
            level, confidence = f"{float(s):.4f}", None
            cells.append(level)
        last = self.reader.arrival(w.start + w.span - 1)
        return Row(name or "", start_s, end_s, w.face_fraction, level, confidence, cells, int(w.dropped.sum()), last)

    def _send(self, row: Row, name: str) -> None:
        """Emit ``row`` as ``name``'s, unless it is past the deadline (then it is counted late): no
        row comes later than :attr:`deadline` after its window's last frame."""
        row.latency_s = time.monotonic() - row.last_arrived
        if row.latency_s > self.deadline:
            self.stats.windows_late += 1
            return
        row.person = name
        if self.people is not None:
            row.cells = [*row.cells, name]
        self.stats.windows += 1
        self.stats.latencies.append(row.latency_s)
        self.emit(row)

    # -- the whole run

    def run(self, stop: threading.Event | None = None) -> LiveStats:
        """Take frames until the source ends or ``stop`` is set (Ctrl-C: ``KeyboardInterrupt`` is
        caught here), then :meth:`finish`; returns the stats."""
        busy = 0.0
        try:
            while stop is None or not stop.is_set():
                frame = self.reader.get(timeout=0.5)
                if frame is None:
                    if self.reader.finished and not self.reader.queue:
                        break
                    continue
                t0 = time.monotonic()
                self.step(frame)
                busy += time.monotonic() - t0
        except KeyboardInterrupt:
            log.info("stopped (Ctrl-C)")
        finally:
            self.reader.stop()
        t0 = time.monotonic()
        self.finish()
        busy += time.monotonic() - t0
        self.stats.busy_s = busy
        self.stats.wall_s = time.monotonic() - self.reader.started
        self.stats.frames_read = self.reader.read
        self.stats.frames_dropped = self.reader.dropped
        return self.stats


# ------------------------------------------------------------------------- outputs


class TimelineAppender:
    """``timeline.csv`` written row by row: the header at the start, each row flushed as it comes."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self._file: TextIO = path.open("w", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(columns)
        self._file.flush()

    def __call__(self, cells: list[str]) -> None:
        self._csv.writerow(cells)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def describe_row(row: Row) -> str:
    """The printed line of a row: time, person, level and confidence (or score), face fraction,
    frames dropped in it, latency."""
    said = row.level if row.confidence is None else f"{row.level} ({row.confidence:.2f})"
    who = f"{row.person:<10} " if row.person and row.person != "face" else ""
    drop = f"  dropped {row.dropped}" if row.dropped else ""
    return (
        f"{row.start_s:8.2f}–{row.end_s:8.2f} s  {who}{said:<22} face {row.face_fraction:4.0%}"
        f"{drop}  latency {row.latency_s * 1000:6.0f} ms"
    )


def describe_summary(summary: dict) -> str:
    """The closing lines of a live run."""
    rtf, med, top = summary["real_time_factor"], summary["latency_median_s"], summary["latency_max_s"]
    latency = "-" if med is None else f"median {med * 1000:.0f} ms, max {top * 1000:.0f} ms"
    return (
        f"{summary['frames_read']} frames read ({summary['source_s']:.1f} s of source at {summary['fps']:g} fps), "
        f"{summary['frames_dropped']} dropped; {summary['windows']} windows decided, "
        f"{summary['windows_skipped']} skipped (more than half their frames dropped), {summary['windows_late']} late\n"
        f"real-time factor {'-' if rtf is None else f'{rtf:.2f}x'}; latency {latency}"
    )


def write_live_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=1) + "\n")


# ---------------------------------------------------------------------------- run


def make_scorer(encoder, probe, meta: dict, dtype=None) -> Scorer:
    """The offline windows' scoring (:func:`fmae.downstream.windows.encode_frames`, then
    :func:`fmae.downstream.scores.score_items`) as a :data:`Scorer`."""
    dtype = dtype or torch.float32

    def score(clips: list[np.ndarray]) -> np.ndarray:
        features = encode_frames(encoder, clips, dtype=dtype, pool=meta.get("pool", "mean"))
        return score_items(probe, features[:, None], meta["kind"]).numpy()

    return score


def run_live(
    source: str,
    config: PredictConfig,
    *,
    emit: Callable[[str], None] = print,
    wrap_score: Callable[[Scorer], Scorer] | None = None,
    max_age: float | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """``python -m fmae.predict --live SOURCE``: the live loop over ``source`` (:func:`open_source`)
    with ``config``'s probe, encoder, windows and faces, until the source ends, ``stop`` is set or
    Ctrl-C (the first ends the run cleanly, a second interrupts at once). Each row goes to ``emit``
    (:func:`describe_row`) and to ``<out_dir>/timeline.csv``; the summary (:meth:`LiveStats.summary`)
    to ``emit``, ``<out_dir>/live.json`` and the return value.

    ``wrap_score`` wraps the scorer (a test slows it down); ``max_age``: how old, in seconds, a
    waiting frame may grow before it is dropped (:class:`FrameReader`; default a window's length,
    so that waiting adds at most a window to the latency; ``math.inf``: drop no frame and skip no
    late window, so that a file gives the offline rows however slow the machine).
    Raises ``ValueError`` / ``FileNotFoundError`` for a source that cannot be opened and a probe
    that does not fit, before anything is written."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    src = open_source(source)
    try:
        return _run(src, config, device, dtype, emit, wrap_score, max_age, stop or threading.Event())
    finally:
        src.close()  # closed by the reader already, unless something failed before it started


def _run(src: Source, config: PredictConfig, device, dtype, emit, wrap_score, max_age, stop) -> dict:
    encoder, probe, meta = load_predictor(config.probe, config.checkpoint, device)
    score = make_scorer(encoder, probe, meta, dtype)
    score = wrap_score(score) if wrap_score is not None else score
    faces = PreprocessConfig(
        size=encoder.config.img_size,
        regions=False,
        faces=config.faces,
        max_faces=config.max_faces,
        min_track=config.min_track,
    )
    span = int(meta["num_frames"]) * int(meta["temporal_stride"])
    hop = hop_frames(span, src.fps, config.hop)
    out = Path(config.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_yaml(config))
    columns = timeline_columns(meta["kind"], meta["class_names"]) + (["person"] if config.faces == "all" else [])
    table = TimelineAppender(out / "timeline.csv", columns)

    def row_out(row: Row) -> None:
        emit(describe_row(row))
        table(row.cells)

    emit(
        f"live: {src.name} at {src.fps:g} fps; windows of {span / src.fps:.2f} s every {hop / src.fps:.2f} s "
        f"({'every person' if config.faces == 'all' else 'one face'}); rows to {out / 'timeline.csv'}; Ctrl-C ends"
    )
    backend = faces.create_backend()
    previous = _catch_interrupt(stop)
    try:
        backend.start_video()
        reader = FrameReader(src, max_age if max_age is not None else span / src.fps)
        late = math.inf if max_age == math.inf else 2.0  # a window decided after 2 window lengths is late
        loop = LiveLoop(reader, backend, score, meta, row_out, faces, hop, config.min_face, late)
        loop.warm_up()
        with reader:
            stats = loop.run(stop)
    finally:
        _restore_interrupt(previous)
        backend.close()
        table.close()
    summary = {"source": src.name, **stats.summary()}
    write_live_summary(out / "live.json", summary)
    emit(describe_summary(summary))
    return summary


def _catch_interrupt(stop: threading.Event):
    """Make the first Ctrl-C set ``stop`` (the loop ends after the frame in hand), the next one
    interrupt as usual; returns the handler to restore (``None`` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping (Ctrl-C again to interrupt at once)")
        stop.set()

    return signal.signal(signal.SIGINT, handler)


def _restore_interrupt(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
