"""One video's face pass: decode, track one face (or every face), crop, parse into regions, write.

:func:`process_video` turns one video into its entry of the cache that
:func:`fmae.data.preprocess.preprocess` makes of a folder (whose layout and manifest are
described there): the crops ``<stem>.avi`` and their region maps ``<stem>.regions.npz``, or,
with ``--faces all``, every person's (below).

It runs in two passes that hold each frame's box and landmarks (a few KB a frame) and a few
decoded frames, whatever the length. With one face on keyframes (the
default) both passes run over **one decoding** (``_OnePass``): a frame waits, decoded, until
the boxes its crop window needs are known (about ``keyframes + smooth // 2`` frames later), then
is cropped, parsed and written; until the first face a frame's window is unknown, so where the
first face comes later than :data:`LOOKAHEAD_BYTES` of frames, the held frames are dropped and
step 3 decodes the video again, as every other setting does. The output is the same either way:

1. decode with PyAV (any FFmpeg codec and container; grayscale and other pixel formats
   become RGB) and let the face backend detect and track one face in every frame: by default
   (``keyframes = 4``, :mod:`fmae.face.keyframes`) it runs on every 4th frame and the frames
   between take the interpolation of their keyframes' boxes and landmarks, except where two
   keyframes disagree (a face appears or goes, or moves fast), where it runs on every frame;
   ``keyframes = 1`` runs it on every frame (the pass of caches made before the field);
2. fill frames without a face and smooth the boxes (:mod:`fmae.face.tracking`): a frame
   without a face keeps the last good box (frames before the first face take the first
   one), then centre and size are averaged over ``smooth`` frames; each window is square,
   ``1 + 2 * margin`` times the face's size, shifted inside the frame where it fits and
   padded black where it does not;
3. decode again (but for the one decoding above), crop and resize to ``size``², and parse each
   crop into regions from its detection's landmarks (with ``keyframes > 1`` the person
   segmentation behind hair runs on every other keyframe's crop, every ``2 * keyframes``-th, and
   is moved into the crops between, and crops are resized in two quicker steps:
   :func:`fmae.face.tracking.crop_frame`). **Gap rule:** a frame without a face borrows the
   landmarks of the detection it took its box from when that is at most ``max_gap`` frames away
   (a detector dropout during a blink or a blur); beyond that its region map is all
   :attr:`FaceRegion.BACKGROUND`. Either way ``has_face`` is ``False`` there;
4. stream the crops and the region maps, as they are made, into files under temporary
   names, renamed into place (maps first) when both are complete.

Every source frame is kept, so the cache's frame ``t`` is the source's frame ``t``.

**Every face** (``faces="all"``, ``--faces all``): pass 1 finds every face in each frame
(up to ``max_faces + 1``) and describes its appearance; :func:`fmae.face.multi_tracking.track_people`
groups the detections into people (identities that survive misses, leaving and coming
back, and tiles that swap places; people seen for less than ``min_track`` seconds are
dropped); pass 2 writes each person's crops and maps, and a ``tracks.csv``, into
``OUT/<rel dir>/<stem>/`` (:mod:`fmae.data.people`). Between the passes it holds, per face
per frame, the box, the descriptor (2 KB) and, for region maps, the landmarks (4 KB). The
default, ``faces="one"``, is the one-face pipeline above, unchanged.

Statuses (record ``status``): ``ok``; ``no_face`` (decoded, but no frame has a face, or,
with ``--faces all``, no one is seen for ``min_track`` seconds: nothing written);
``too_many_faces`` (``--faces all``: more people than ``max_faces``; nothing written);
``unreadable`` (not a video, or not decodable from the first frame); ``empty`` (no video
stream, or no frames); ``timeout`` (opening it, or the next frame, took more than
:data:`STALL_S`: the decoding was cut off; redone by the next run); ``error`` (anything
unexpected, with the exception in ``message``). A file that decodes for a while and then
fails, or that has fewer frames than its header says, is ``ok`` with ``truncated: true``
and a message: its good frames are cached. A header's frame rate that the cache cannot
hold (:func:`fmae.data.clips.frame_rate`) is replaced, and the message says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fmae.data.clips import DEFAULT_FPS, frame_rate, rgb_array
from fmae.data.people import people_folder, plan_people, track_rows, write_people
from fmae.data.region_maps import RegionMapWriter, region_map_path
from fmae.data.video_writer import VideoWriter
from fmae.face.backend import Detection, FaceBackend, create_backend
from fmae.face.identity import DESCRIPTOR_DIM, face_descriptor
from fmae.face.keyframes import HAIR_KEYFRAMES, KeyframeDetector, KeyframeParser
from fmae.face.multi_tracking import TrackerConfig, track_people
from fmae.face.regions import FaceRegion
from fmae.face.tracking import crop_frame, crop_windows, frame_ranges, hold_gaps, smooth, to_crop_coords
from fmae.runtime.config import setting
from fmae.runtime.files import digest as settings_digest
from fmae.runtime.files import remove_temporaries, write_atomically

PIPELINE_VERSION = 1
"""Part of the config digest: bump it when the cache's content changes for the same config."""
KEYFRAMES_VERSION = 2
"""Part of the digest of a one-face keyframe cache with region maps (``keyframes > 1``) alone: bump
it when such a cache's content changes for the same config (2: hair segmented on every other
keyframe, :data:`fmae.face.keyframes.HAIR_KEYFRAMES`)."""
STATUSES: tuple[str, ...] = ("ok", "no_face", "too_many_faces", "unreadable", "empty", "timeout", "error")
FACES: tuple[str, ...] = ("one", "all")
STALL_S = 60.0
"""Seconds a video may go without giving a frame (opening it, or between two frames) before
its decoding is cut off and the video recorded as ``timeout``."""
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError)


@dataclass(frozen=True)
class PreprocessConfig:
    """What the cache holds; its :meth:`digest` is stored with every record (``weights``,
    a folder of model files, is not part of it)."""

    size: int = setting(224, "crop side in pixels (even: 4:2:0 video)")
    margin: float = setting(0.25, "crop border around the face box, fraction of its size per side")
    smooth: int = setting(5, "frames in the centred box-smoothing window (odd)")
    max_gap: int = setting(15, "frames a face-less frame may borrow the last face's landmarks across (the gap rule)")
    backend: str = setting(
        "mediapipe", "face backend (fmae.face.create_backend): mediapipe ships its models; facexlib needs --weights"
    )
    weights: str = setting("", "model folder for the facexlib backend (it never downloads)")
    qscale: int = setting(3, "MJPEG quality, 2 best .. 31 worst")
    regions: bool = setting(
        True,
        "parse the crops into region maps; false (--no-regions): crops only, about twice as "
        "fast, enough to probe or predict, but pre-training with the facial mask needs the maps",
    )
    faces: str = setting(
        "one",
        "one: follow one face per video; all: every face, each person's crops and maps in OUT/<rel dir>/<stem>/"
        "person-NN.* beside a tracks.csv (fmae.data.people)",
        FACES,
    )
    max_faces: int = setting(8, "with --faces all: most people a video may show; more is the status too_many_faces")
    min_track: float = setting(
        1.0, "with --faces all: seconds a person must be seen for; people seen less are dropped, not guessed"
    )
    keyframes: int = setting(
        4,
        "one face: run the face models on every k-th frame only (fmae.face.keyframes): detect there and "
        "interpolate between (every frame where two keyframes disagree), segment hair on every other keyframe "
        "and move it between, and resize crops in two steps; 1: every frame through the models and the one-step area "
        "filter, the slower pass that caches made before this field had (--faces all always runs every frame)",
    )

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16, got {self.size}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.smooth < 1 or self.smooth % 2 == 0:
            raise ValueError(f"smooth must be odd and >= 1, got {self.smooth}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if not 2 <= self.qscale <= 31:
            raise ValueError(f"qscale must be in [2, 31], got {self.qscale}")
        if self.weights and self.backend == "mediapipe":
            raise ValueError(
                "the mediapipe backend ships its models; weights is for backends that load files (facexlib)"
            )
        if self.faces not in FACES:
            raise ValueError(f"faces must be one of {FACES}, got {self.faces!r}")
        if self.max_faces < 1 or self.min_track < 0:
            raise ValueError(f"need max_faces >= 1 and min_track >= 0, got {self.max_faces}, {self.min_track}")
        if self.keyframes < 1:
            raise ValueError(f"keyframes must be >= 1, got {self.keyframes}")
        if self.faces == "all" and self.backend == "facexlib":
            raise ValueError("--faces all needs a backend that finds several faces (mediapipe); facexlib follows one")

    def digest(self) -> str:
        """12 hex digits identifying the cache content this config produces."""
        # regions=True, keyframes=1 and faces="one" (with the fields only --faces all reads) are
        # left out, so that caches made before those fields keep their digest.
        fields = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k != "weights" and not (k == "regions" and v) and not (k == "keyframes" and v == 1)
        }
        if self.faces == "one":
            fields = {k: v for k, v in fields.items() if k not in ("faces", "max_faces", "min_track")}
            if self.keyframes > 1 and self.regions:
                fields["keyframes_version"] = KEYFRAMES_VERSION
        else:  # --faces all runs every frame through the models whatever keyframes says
            fields.pop("keyframes", None)
        return settings_digest({"version": PIPELINE_VERSION, **fields}, 12)

    def create_backend(self) -> FaceBackend:
        """A new face backend of this config's kind (with ``--faces all``, finding one face more
        than ``max_faces``, so that too many faces show)."""
        kwargs: dict = {"weights": self.weights} if self.weights else {}
        if self.faces == "all":
            kwargs["max_faces"] = self.max_faces + 1
        return create_backend(self.backend, **kwargs)


# ------------------------------------------------------------------------ one video


class _Unreadable(Exception):
    pass


class _Empty(Exception):
    pass


class _Stalled(Exception):
    pass


class _Video:
    """An open video's first stream: ``fps`` (and ``fps_note`` when the header's rate was not
    usable), ``frames_declared`` and RGB frames by iteration, each within :data:`STALL_S` seconds."""

    def __init__(self, path: Path) -> None:
        self._stall_s = STALL_S
        opening = time.monotonic()
        try:
            # FFmpeg's interrupt callback gives up an open or a read that takes more than STALL_S.
            self._container = av.open(str(path), timeout=self._stall_s)
        except _DECODE_ERRORS as e:
            if time.monotonic() - opening >= self._stall_s:
                raise _Stalled(f"opening it took more than {self._stall_s:g} s: cut off") from e
            raise _Unreadable(f"cannot open: {_describe(e)}") from e
        if not self._container.streams.video:
            self._container.close()
            raise _Empty("no video stream")
        # No frame threading: it holds back decoded frames, and a decoding error then
        # loses them too, where a single thread yields every good frame before the error.
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:  # a damaged header can name a codec that does not exist
            self._container.close()
            raise _Unreadable("no decoder for its video stream")
        self.fps, self.fps_note = frame_rate(self._stream)
        self.frames_declared = int(self._stream.frames or 0)

    def __iter__(self):
        """``uint8 [H, W, 3]`` frames; a decoding error is raised after every frame before it,
        and :class:`_Stalled` when the next frame takes more than :data:`STALL_S` (the caller's
        time between frames not counted)."""
        return self.frames()

    def frames(self, rgb: bool = True):
        """As iterating, or (``rgb`` False) the decoded ``av.VideoFrame`` objects, for a caller that
        converts only some of them (:func:`rgb_array`)."""
        convert = rgb_array if rgb else (lambda frame: frame)
        waiting_since = time.monotonic()
        try:
            for packet in self._container.demux(self._stream):
                if time.monotonic() - waiting_since > self._stall_s:
                    raise _Stalled(f"no frame came for {self._stall_s:g} s: decoding was cut off")
                for frame in packet.decode():
                    yield convert(frame)
                    waiting_since = time.monotonic()
        except _DECODE_ERRORS as e:
            if time.monotonic() - waiting_since >= self._stall_s:  # the interrupt callback gave up a read
                raise _Stalled(f"reading stalled for more than {self._stall_s:g} s: decoding was cut off") from e
            # The decoder still holds frames that B-frame reordering delayed: drain them.
            try:
                for frame in self._stream.codec_context.decode(None):
                    yield convert(frame)
            except _DECODE_ERRORS:
                pass
            raise

    def __enter__(self) -> _Video:
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _decode(video: _Video, limit: int | None = None, rgb: bool = True):
    """Frames of ``video`` until its end, ``limit`` frames or a decoding error.

    Yields ``uint8 [H, W, 3]`` (or, ``rgb`` False, ``av.VideoFrame``); returns (as
    ``StopIteration.value``) the error's text or ``None``. Errors of the caller's per-frame
    work are not caught here.
    """
    frames = iter(video.frames(rgb))
    count = 0
    while limit is None or count < limit:
        try:
            frame = next(frames)
        except StopIteration:
            return None
        except _DECODE_ERRORS as e:
            return _describe(e)
        count += 1
        yield frame
    return None


@dataclass
class _Tracked:
    """What the first decoding pass keeps: per-frame boxes and landmarks, and the stream's facts.

    One face: a ``float32 [4]`` box (``NaN`` without a face) and ``[K, 2]`` landmarks (or
    ``None``) per frame. Every face (``--faces all``): ``float32 [N_t, 4]`` boxes, a list of
    ``N_t`` landmark arrays (empty without region maps, which alone need them) and
    ``float16 [N_t, D]`` appearance descriptors per frame (:mod:`fmae.face.identity`).
    """

    boxes: list
    landmarks: list
    descriptors: list = dataclasses.field(default_factory=list)
    fps: Fraction = DEFAULT_FPS
    fps_note: str = ""
    declared: int = 0
    decode_error: str | None = None


@dataclass
class _CropPlan:
    """Each frame's crop window, where its landmarks come from and whether it is parsed."""

    windows: np.ndarray
    source: np.ndarray
    parsed: np.ndarray
    has_face: np.ndarray


def _finish(record: dict, start: float, status: str, message: str = "") -> dict:
    """Close ``record`` with its status, message and the seconds since ``start``."""
    record.update(status=status, message=message, seconds=round(time.perf_counter() - start, 3))
    return record


def _until_decode_error(frames, tracked: _Tracked):
    """The frames of a :func:`_decode` generator; the decoding error that ended them (or
    ``None``) goes to ``tracked.decode_error``."""
    tracked.decode_error = yield from frames


def _track_faces(src: Path, backend: FaceBackend, record: dict, config: PreprocessConfig) -> _Tracked:
    """Pass 1: decode ``src`` and detect and track one face (or every face, with ``--faces all``),
    keeping only boxes, landmarks and descriptors."""
    tracked = _Tracked(boxes=[], landmarks=[])
    # One face on keyframes (fmae.face.keyframes): its detections lag up to k - 1 frames behind.
    # Its frames stay decoded but unconverted until it detects on them.
    keyframes = (
        KeyframeDetector(backend, config.keyframes, to_array=rgb_array)
        if config.faces == "one" and config.keyframes > 1
        else None
    )

    def keep(det: Detection | None) -> None:
        tracked.boxes.append(det.box if det is not None else np.full(4, np.nan, np.float32))
        tracked.landmarks.append(det.landmarks if det is not None else None)

    with _Video(src) as video:
        record.update(fps=float(video.fps))
        backend.start_video()
        first = True
        for rgb in _until_decode_error(_decode(video, rgb=keyframes is None), tracked):
            if first:
                height, width = (rgb.height, rgb.width) if keyframes is not None else rgb.shape[:2]
                record.update(height=height, width=width)
                first = False
            if config.faces == "all":
                _observe_everyone(tracked, rgb, backend.detect_all(rgb), keep_landmarks=config.regions)
            elif keyframes is not None:
                for det in keyframes.push(rgb):
                    keep(det)
            else:
                keep(backend.detect(rgb))
        if keyframes is not None:
            for det in keyframes.finish():
                keep(det)
        tracked.fps, tracked.fps_note, tracked.declared = video.fps, video.fps_note, video.frames_declared
    return tracked


def _observe_everyone(tracked: _Tracked, rgb: np.ndarray, faces: list[Detection], keep_landmarks: bool) -> None:
    """Keep one frame's detections for ``--faces all``: boxes, landmarks if kept, descriptors."""
    tracked.boxes.append(np.array([d.box for d in faces], np.float32).reshape(len(faces), 4))
    tracked.landmarks.append([d.landmarks for d in faces] if keep_landmarks else [])
    # float16 halves what a long recording holds between the passes; distances move by < 1e-3.
    looks = [face_descriptor(rgb, d.box, d.landmarks) for d in faces]
    tracked.descriptors.append(np.array(looks, np.float16).reshape(len(faces), DESCRIPTOR_DIM))


def _no_frames(decode_error: str | None) -> tuple[str, str]:
    """The status and message of a video of which no frame decoded."""
    if decode_error:
        return "unreadable", f"no frame decodes: {decode_error}"
    return "empty", "the video has no frames"


def _truncation_notes(tracked: _Tracked, T: int) -> list[str]:
    """Notes saying the video ended early: a decoding error, or fewer frames than its header says."""
    if tracked.decode_error:
        return [f"truncated: decoding stopped after frame {T - 1}: {tracked.decode_error}"]
    if tracked.declared > T:
        return [f"truncated: the header says {tracked.declared} frames, {T} decode"]
    return []


def _count_faces(record: dict, landmarks: list) -> np.ndarray:
    """Record which frames have a face; returns that bool [T] mask."""
    has_face = np.array([lm is not None for lm in landmarks])
    T = len(landmarks)
    record.update(
        face_frames=int(has_face.sum()),
        frames_without_face=int(T - has_face.sum()),
        missing_face_ranges=frame_ranges(~has_face),
    )
    return has_face


def _plan_crops(record: dict, tracked: _Tracked, has_face: np.ndarray, config: PreprocessConfig) -> _CropPlan:
    """Fill and smooth the boxes into crop windows (the frame's size from ``record``) and apply the gap rule."""
    T = len(tracked.boxes)
    filled, source = hold_gaps(np.stack(tracked.boxes))
    windows = crop_windows(smooth(filled, config.smooth), (record["height"], record["width"]), config.margin)
    parsed = np.abs(np.arange(T) - source) <= config.max_gap
    return _CropPlan(windows=windows, source=source, parsed=parsed, has_face=has_face)


def _record_plan(record: dict, plan: _CropPlan) -> None:
    """Record the frames beyond the gap rule and the crop windows' mean and side range."""
    sides = plan.windows[:, 2] - plan.windows[:, 0]
    mean_window = [round(float(v), 1) for v in plan.windows.mean(0)]
    record.update(
        unparsed_frames=int(len(plan.parsed) - plan.parsed.sum()),
        boxes={"mean": mean_window, "side_min": float(sides.min()), "side_max": float(sides.max())},
    )


class _CropWriter:
    """Pass 2's work on one frame: crop it, parse the crop, stream both to the writers.

    crops: a :class:`VideoWriter`; maps: a :class:`RegionMapWriter` or ``None`` (crops only).
    ``keyframes = 1``: :meth:`FaceBackend.parse` on every crop and the one-step area filter, the
    reference; above, the segmentation is reused between keyframes and crops resize in two steps.
    """

    def __init__(self, backend: FaceBackend, config: PreprocessConfig, crops: VideoWriter, maps) -> None:
        self.backend, self.size, self.crops, self.maps = backend, config.size, crops, maps
        self.fast = config.keyframes > 1
        # Hair on every other keyframe (fmae.face.keyframes.HAIR_KEYFRAMES).
        self.parse = KeyframeParser(backend, config.keyframes * HAIR_KEYFRAMES) if config.keyframes > 1 else None
        self.background = np.full((1, config.size, config.size), FaceRegion.BACKGROUND, np.uint8)

    def write(self, t: int, rgb: np.ndarray, window: np.ndarray, landmarks: np.ndarray | None) -> None:
        """Frame ``t`` (``uint8 [H, W, 3]``) cut at ``window``, parsed from ``landmarks`` (frame
        coordinates; ``None``: beyond the gap rule, an all-background map)."""
        S = self.size
        crop = crop_frame(rgb, window, S, fast=self.fast)
        self.crops.write(crop)
        if self.maps is None:
            return
        if landmarks is None:
            self.maps.write(self.background)
            return
        landmarks = to_crop_coords(landmarks, window, S)
        if self.parse is None:
            self.maps.write(self.backend.parse(crop, landmarks)[None])
        else:
            self.maps.write(self.parse(t, crop, landmarks, window)[None])


def _crop_all(src: Path, out: _CropWriter, tracked: _Tracked, plan: _CropPlan, to_rgb=rgb_array) -> None:
    """Pass 2: decode ``src`` again and crop, parse and write each frame by ``plan``."""
    T, count = len(tracked.boxes), 0
    with _Video(src) as video:
        for t, frame in enumerate(_decode(video, limit=T, rgb=False)):
            landmarks = tracked.landmarks[plan.source[t]] if plan.parsed[t] else None
            out.write(t, to_rgb(frame), plan.windows[t], landmarks)
            count = t + 1
    if count != T:
        raise RuntimeError(f"{src}: the second decoding pass gave {count} frames, the first {T}")


def _stream_crops(
    src: Path,
    video_tmp: Path,
    maps_tmp: Path | None,
    backend: FaceBackend,
    config: PreprocessConfig,
    tracked: _Tracked,
    plan: _CropPlan,
) -> None:
    """Pass 2: decode again, crop and parse each frame, streaming crops and maps to the temporary files."""
    S = config.size
    with (
        VideoWriter(video_tmp, tracked.fps, (S, S), config.qscale) as crops,
        RegionMapWriter(maps_tmp, (S, S)) if maps_tmp else contextlib.nullcontext() as maps,
    ):
        _crop_all(src, _CropWriter(backend, config, crops, maps), tracked, plan)
        if maps is not None:
            maps.add(boxes=plan.windows, has_face=plan.has_face)


def _atomic_cache(video_out: Path, config: PreprocessConfig, stream) -> None:
    """``stream(video_tmp, maps_tmp or None)`` into temporary names, renamed into place (maps
    first) once both are complete; an exception leaves neither (nor a temporary)."""
    for done in (video_out, region_map_path(video_out)):
        remove_temporaries(done)  # a killed run's half-written files: this run is the video's one writer
    if config.regions:
        write_atomically(video_out, lambda v: write_atomically(region_map_path(video_out), lambda m: stream(v, m)))
    else:
        write_atomically(video_out, lambda v: stream(v, None))


def _write_cache(
    src: Path, video_out: Path, backend: FaceBackend, config: PreprocessConfig, tracked: _Tracked, plan: _CropPlan
) -> None:
    """Run pass 2 into temporary names, renamed into place (maps first) once both are complete."""
    _atomic_cache(video_out, config, lambda v, m: _stream_crops(src, v, m, backend, config, tracked, plan))


# ------------------------------------------------------------------------ one decoding

LOOKAHEAD_BYTES = 64 << 20
"""Decoded frames the one-decoding pass (:class:`_OnePass`) may hold while it waits for a video's
first face; a face that comes later sends it back to decoding the video twice."""


class _NothingToWrite(Exception):
    """A one-decoding pass found no frame or no face: its temporary files are thrown away."""


class _OnePass:
    """One face on keyframes: passes 1 and 2 over a single decoding, holding a few frames.

    A frame's crop window needs the boxes of the ``smooth // 2`` frames after it, and the
    keyframe detector decides boxes up to ``keyframes`` frames late, so each decoded frame waits
    in :attr:`held` (as decoded, converted to RGB at most once) until its window is known, then
    goes through :class:`_CropWriter`; at most ``keyframes + smooth // 2 + 1`` frames in steady
    state. Windows, the gap rule and the maps are those of the two-pass plan (:func:`_plan_crops`,
    frame by frame: ``tests/data/test_preprocess.py`` binds the two byte for byte). Before the
    first face a frame's window is the first face's, so frames wait until it is seen; if that
    takes more than :data:`LOOKAHEAD_BYTES` of frames, the pass drops them, goes on detecting,
    and crops from a second decoding at the end (:func:`_crop_all`), as the two-pass pipeline does.
    """

    def __init__(self, config: PreprocessConfig, tracked: _Tracked, out: _CropWriter, hw: tuple[int, int]) -> None:
        self.config, self.tracked, self.out, self.hw = config, tracked, out, hw
        self.held: deque[list] = deque()  # [av.VideoFrame, its RGB array or None], frames not yet written
        self.source: list[int] = []  # per decided frame: the face it borrows (hold_gaps), -1 before any
        self.windows: list[np.ndarray] = []  # per written frame
        self.parsed: list[bool] = []
        self.first: int | None = None  # the first face's frame
        self.deferred = False  # the first face came too late: crop from a second decoding
        self.limit: int | None = None  # frames held at most before the first face (set at the first frame)

    def rgb(self, item: list) -> np.ndarray:
        """``uint8 [H, W, 3]`` of a held frame, converted once (the detector may have already)."""
        if item[1] is None:
            item[1] = rgb_array(item[0])
        return item[1]

    def hold(self, frame: av.VideoFrame) -> list:
        if self.limit is None:  # a decoded frame and its RGB array
            self.limit = LOOKAHEAD_BYTES // (sum(p.buffer_size for p in frame.planes) + 3 * frame.width * frame.height)
        item = [frame, None]
        if not self.deferred:
            self.held.append(item)
            if self.first is None and len(self.held) > self.limit:
                self.deferred = True
                self.held.clear()
        return item

    def decided(self, det: Detection | None) -> None:
        """The next frame's detection (in order)."""
        t = len(self.tracked.boxes)
        self.tracked.boxes.append(det.box if det is not None else np.full(4, np.nan, np.float32))
        self.tracked.landmarks.append(det.landmarks if det is not None else None)
        if det is not None:
            self.first = t if self.first is None else self.first
            self.source.append(t)
        else:
            self.source.append(self.source[-1] if self.source else -1)

    def flush(self, end: bool = False) -> None:
        """Write the held frames whose windows are known (``end``: the video has no more frames)."""
        if self.first is None or self.deferred or not self.held:
            return
        half, T, t0 = self.config.smooth // 2, len(self.tracked.boxes), len(self.windows)
        t1 = T if end else min(T - half, t0 + len(self.held))  # a window needs the boxes `half` frames on
        if t1 <= t0:
            return
        # smooth()'s centred mean (the window shrinking at the ends) over hold_gaps' boxes, as its
        # cumulative sums give it: sums of float32 boxes in float64, exact, so the same windows.
        t = np.arange(t0, t1)
        h = np.minimum(np.minimum(t, T - 1 - t), half)
        lo, hi = t - h, t + h + 1
        base = int(lo[0])
        boxes = np.array([self.tracked.boxes[self._source(r)] for r in range(base, int(hi.max()))], np.float64)
        csum = np.concatenate([np.zeros((1, 4)), np.cumsum(boxes, axis=0)])
        smoothed = (csum[hi - base] - csum[lo - base]) / (hi - lo)[:, None]
        windows = crop_windows(smoothed.astype(np.float32), self.hw, self.config.margin)
        for t, window in zip(range(t0, t1), windows):
            source = self._source(t)
            parsed = abs(t - source) <= self.config.max_gap
            self.windows.append(window)
            self.parsed.append(parsed)
            item = self.held.popleft()
            self.out.write(t, self.rgb(item), window, self.tracked.landmarks[source] if parsed else None)

    def _source(self, t: int) -> int:
        """The frame whose box frame ``t`` takes (hold_gaps: the first face's before it)."""
        return self.source[t] if t >= self.first else self.first

    def plan(self, has_face: np.ndarray) -> _CropPlan:
        """The windows and the gap rule of the frames written."""
        source = np.array([self._source(t) for t in range(len(self.windows))])
        return _CropPlan(np.stack(self.windows), source, np.array(self.parsed, bool), has_face)


def _one_decoding(
    src: Path, video_out: Path, backend: FaceBackend, record: dict, config: PreprocessConfig
) -> tuple[_Tracked, _CropPlan | None]:
    """Passes 1 and 2 of one face on keyframes (``keyframes > 1``) over one decoding
    (:class:`_OnePass`): detect, crop, parse and write the cache as the frames come.

    Returns what pass 1 keeps and the plan written by, or ``None`` where nothing was written (no
    frame, or no face: the status is the caller's). Raises as :func:`_track_faces` does."""
    with _Video(src) as video:
        record.update(fps=float(video.fps))
        tracked = _Tracked(boxes=[], landmarks=[], fps=video.fps, fps_note=video.fps_note)
        written: list[_CropPlan] = []

        def stream(video_tmp: Path, maps_tmp: Path | None) -> None:
            S = config.size
            with (
                VideoWriter(video_tmp, video.fps, (S, S), config.qscale) as crops,
                RegionMapWriter(maps_tmp, (S, S)) if maps_tmp else contextlib.nullcontext() as maps,
            ):
                out = _CropWriter(backend, config, crops, maps)
                one = None
                detector = KeyframeDetector(backend, config.keyframes, to_array=lambda item: one.rgb(item))
                backend.start_video()
                for frame in _until_decode_error(_decode(video, rgb=False), tracked):
                    if one is None:
                        record.update(height=frame.height, width=frame.width)
                        one = _OnePass(config, tracked, out, (frame.height, frame.width))
                    for det in detector.push(one.hold(frame)):
                        one.decided(det)
                    one.flush()
                for det in detector.finish():
                    one.decided(det)
                if one is None or one.first is None:
                    raise _NothingToWrite
                has_face = np.array([lm is not None for lm in tracked.landmarks])
                if one.deferred:
                    plan = _plan_crops(record, tracked, has_face, config)
                    _crop_all(src, out, tracked, plan, lambda frame: one.rgb([frame, None]))
                else:
                    one.flush(end=True)
                    plan = one.plan(has_face)
                if maps is not None:
                    maps.add(boxes=plan.windows, has_face=plan.has_face)
                written.append(plan)

        try:
            _atomic_cache(video_out, config, stream)
        except _NothingToWrite:
            pass
        tracked.declared = video.frames_declared
    return tracked, (written[0] if written else None)


def _cache_people(
    src: Path,
    video_out: Path,
    backend: FaceBackend,
    config: PreprocessConfig,
    tracked: _Tracked,
    record: dict,
    notes: list[str],
) -> tuple[str, str]:
    """``--faces all`` after pass 1: who is who, then pass 2 into the people's folder
    (:mod:`fmae.data.people`). Returns the status and message; an ``ok`` record gains
    ``persons``, the people's fields, for :meth:`fmae.data.preprocess._Run.record` to write as rows."""
    T, fps = len(tracked.boxes), float(tracked.fps)
    people = track_people(
        tracked.boxes, tracked.descriptors, TrackerConfig(min_frames=max(1, round(config.min_track * fps)))
    )
    seen = np.array([(ids >= 0).any() for ids in people.person])
    record.update(
        face_frames=int(seen.sum()),
        frames_without_face=int(T - seen.sum()),
        missing_face_ranges=frame_ranges(~seen),
        people=people.count,
        dropped_people=people.dropped,
    )
    tail = "".join(f"; {n}" for n in notes)
    if people.count == 0:
        if not any(len(b) for b in tracked.boxes):
            return "no_face", "no frame has a face" + tail
        return "no_face", f"no one is seen for {config.min_track:g} s ({people.dropped} briefer faces dropped)" + tail
    if people.count > config.max_faces:
        return "too_many_faces", f"{people.count} people, more than max_faces {config.max_faces}: raise it" + tail
    plans = plan_people(
        tracked.boxes, people, (record["height"], record["width"]), config.margin, config.smooth, config.max_gap
    )
    with _Video(src) as video:
        write_people(
            people_folder(video_out),
            _decode(video, limit=T),
            plans,
            track_rows(tracked.boxes, people, fps),
            fps=tracked.fps,
            size=config.size,
            qscale=config.qscale,
            landmarks=tracked.landmarks if config.regions else None,
            parse=backend.parse if config.regions else None,
        )
    record["persons"] = [plan.summary() for plan in plans]
    return "ok", "; ".join(notes)


def process_video(src: str | Path, video_out: str | Path, backend: FaceBackend, config: PreprocessConfig) -> dict:
    """Preprocess one video into ``video_out`` (``.avi``) and its ``.regions.npz`` sidecar (with
    ``config.faces == "all"``: every person's into the folder ``video_out`` without its suffix,
    :mod:`fmae.data.people`; the record then holds the people's fields under ``persons``).

    With ``config.regions`` off it writes the crops alone, without parsing them (the
    parse is about 60 % of the face pipeline's time); the record's
    ``missing_face_ranges`` still says which frames had a face.

    Bad input is reported, not raised: the returned record's ``status`` is one of
    :data:`STATUSES` and ``message`` says why (see :mod:`fmae.data.preprocess` for the
    record's keys; the caller adds the identifying ones). Files are written only for
    ``ok``, each under a temporary name renamed into place, so an existing cache entry
    survives a failure. Unexpected exceptions (bugs, out of memory) propagate.
    """
    src, video_out = Path(src), Path(video_out)
    start = time.perf_counter()
    record: dict = {"status": "ok", "message": "", "frames": 0, "truncated": False}
    # One face on keyframes decodes once (_one_decoding), writing as it goes; the rest decodes twice.
    one_decoding = config.faces == "one" and config.keyframes > 1
    try:
        if one_decoding:
            tracked, written = _one_decoding(src, video_out, backend, record, config)
        else:
            tracked, written = _track_faces(src, backend, record, config), None
    except _Unreadable as e:
        return _finish(record, start, "unreadable", str(e))
    except _Empty as e:
        return _finish(record, start, "empty", str(e))
    except _Stalled as e:
        return _finish(record, start, "timeout", str(e))
    T = record["frames"] = len(tracked.boxes)
    if T == 0:
        return _finish(record, start, *_no_frames(tracked.decode_error))
    notes = _truncation_notes(tracked, T)
    record["truncated"] = bool(notes)
    notes += [tracked.fps_note] if tracked.fps_note else []
    try:
        if config.faces == "all":
            return _finish(record, start, *_cache_people(src, video_out, backend, config, tracked, record, notes))
        has_face = _count_faces(record, tracked.landmarks)
        if not has_face.any():
            return _finish(record, start, "no_face", "no frame has a face" + "".join(f"; {n}" for n in notes))
        plan = written if written is not None else _plan_crops(record, tracked, has_face, config)
        _record_plan(record, plan)
        if written is None:
            _write_cache(src, video_out, backend, config, tracked, plan)
    except _Stalled as e:  # the second pass, over frames the first read in time
        return _finish(record, start, "timeout", str(e))
    return _finish(record, start, "ok", "; ".join(notes))
