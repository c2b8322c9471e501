"""Clips from cached face videos: DAiSEE label CSVs, PyAV decoding, frame sampling and a torch Dataset.

DAiSEE's layout, which the synthetic set (:mod:`fmae.data.synthetic`) copies::

    ROOT/DataSet/{Train,Validation,Test}/<subject>/<clip>/<clip>.avi
    ROOT/Labels/{Train,Validation,Test}Labels.csv   # ClipID,Boredom,Engagement,Confusion,Frustration␣

The real CSVs end their header with ``"Frustration "`` (a trailing space) and give
``ClipID`` with its extension (``1100011002.avi``). Region maps, when a clip has them,
sit beside the video as ``<clip>.regions.npz`` (:mod:`fmae.data.region_maps`): ``uint8
[T, H, W]`` of :class:`fmae.face.FaceRegion` ids, one map per video frame.

Every loader (this module's :class:`ClipDataset`, the DALI pipeline in
:mod:`fmae.data.dali`) reads a list of :class:`ClipItem` (the data-set adapters in
:mod:`fmae.data.datasets` make them) and picks its frames with the same
:class:`ClipSampler` and item order (:func:`epoch_order`), so both give the same frames
of the same items for the same seed and epoch.
"""

from __future__ import annotations

import csv
import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torch.utils.data import Dataset

from fmae.data.region_maps import load_region_maps
from fmae.data.video_writer import MAX_FPS, MIN_FPS

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("Train", "Validation", "Test")
LABEL_COLUMNS: tuple[str, ...] = ("ClipID", "Boredom", "Engagement", "Confusion", "Frustration ")
"""DAiSEE's header, byte for byte (the last name really ends in a space)."""
VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4", ".wmv", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv")
"""Video files the loaders and adapters recognise (compared in lower case)."""
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
NO_LABEL = -1
"""The ``label`` of an unlabelled item in a batch (pre-training folders)."""
DEFAULT_FPS = Fraction(25)
"""The frame rate of a video whose header gives none that FMAE can use."""


class ClipItem(NamedTuple):
    """One video (or a window of one) that a loader draws clips from.

    ``label`` is an ``int`` class, a ``float`` score, or ``None`` when unlabelled. The
    clip's frames are drawn from ``[start, stop)``; ``stop=None`` means the video's end.
    """

    path: Path
    label: int | float | None = None
    start: int = 0
    stop: int | None = None


def label_dtype(items: Sequence[ClipItem]) -> np.dtype:
    """``int64`` when every label is an int or every label is ``None`` (then batches carry
    :data:`NO_LABEL`), ``float32`` when every label is a float; ``ValueError`` when mixed."""
    kinds = {None if it.label is None else float if isinstance(it.label, float) else int for it in items}
    if len(kinds) > 1:
        raise ValueError(
            f"items mix label kinds {sorted(k.__name__ if k else 'None' for k in kinds)}; a loader needs one"
        )
    return np.dtype(np.float32) if kinds == {float} else np.dtype(np.int64)


def label_array(label: int | float | None, dtype: np.dtype) -> np.ndarray:
    """A label as a 0-d array of ``dtype``, :data:`NO_LABEL` for ``None``."""
    return np.array(NO_LABEL if label is None else label, dtype=dtype)


def label_file(root: str | Path, split: str) -> Path:
    """``ROOT/Labels/<split>Labels.csv``; ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(root) / "Labels" / f"{split}Labels.csv"


def read_labels(
    csv_path: str | Path, column: str = "Engagement", levels: Sequence[int] | None = None
) -> dict[str, int]:
    """``{ClipID: level}`` from a DAiSEE label CSV, in file order.

    Header names are compared without surrounding spaces, so ``"Frustration "`` and
    ``"Frustration"`` both work. Raises ``ValueError`` naming the line on a missing
    column, a non-integer level, a level outside ``levels`` (when given) or a repeated
    ClipID.
    """
    csv_path = Path(csv_path)
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        for needed in ("ClipID", column.strip()):
            if needed not in header:
                raise ValueError(f"{csv_path}: header {header} has no column {needed!r}")
        clip_col, label_col = header.index("ClipID"), header.index(column.strip())
        labels: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                clip_id, level = row[clip_col].strip(), int(row[label_col])
            except (IndexError, ValueError) as e:
                raise ValueError(f"{csv_path}:{line}: bad row {row}") from e
            if levels is not None and level not in levels:
                raise ValueError(f"{csv_path}:{line}: {column.strip()} level {level} is not one of {list(levels)}")
            if clip_id in labels:
                raise ValueError(f"{csv_path}:{line}: ClipID {clip_id} appears twice")
            labels[clip_id] = level
    return labels


def list_clips(
    root: str | Path, split: str, column: str = "Engagement", levels: Sequence[int] | None = None
) -> list[tuple[Path, int]]:
    """``(video path, level)`` for every labelled clip of a split that exists on disk.

    Videos are matched to ClipIDs by file stem, so a ``.mp4`` on disk matches an
    ``.avi`` in the CSV (DAiSEE has a few). Labelled clips without a video are skipped
    with a logged warning; a split with none raises ``FileNotFoundError``. ``levels``
    is passed to :func:`read_labels`.
    """
    labels = read_labels(label_file(root, split), column, levels)
    split_dir = Path(root) / "DataSet" / split
    videos = {p.stem: p for p in split_dir.glob("*/*/*") if p.suffix.lower() in VIDEO_SUFFIXES}
    unlabelled = sorted(set(videos) - {Path(c).stem for c in labels})
    if unlabelled:
        log.warning(
            "%s: %d videos under %s have no row in %s (e.g. %s); skipped",
            split,
            len(unlabelled),
            split_dir,
            label_file(root, split),
            unlabelled[0],
        )
    items, missing = [], []
    for clip_id, level in labels.items():
        video = videos.get(Path(clip_id).stem)
        if video is None:
            missing.append(clip_id)
        else:
            items.append((video, level))
    if missing:
        log.warning(
            "%s: %d labelled clips have no video under %s (e.g. %s); skipped",
            split,
            len(missing),
            split_dir,
            missing[0],
        )
    if not items:
        raise FileNotFoundError(f"no labelled videos of split {split} under {split_dir}")
    return items


@dataclass(frozen=True)
class ClipSampler:
    """Which frames a clip takes: ``num_frames`` frames ``stride`` apart inside an item's window.

    With ``random_start`` the first frame is drawn uniformly from the window's room by a
    generator seeded with ``(seed, epoch, index)`` — the same clip for the same item and
    epoch in any process or loader — else the clip is centred in the window. A window
    shorter than the clip's span repeats its last frame.
    """

    num_frames: int = 16
    stride: int = 2
    random_start: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {self.num_frames}, {self.stride}")

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last, inclusive."""
        return (self.num_frames - 1) * self.stride + 1

    def indices(
        self, index: int, epoch: int, num_available: int, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """``int64 [num_frames]``: the video frames of item ``index``'s clip in ``epoch``.

        The window is ``[start, stop)`` cut to the video's ``num_available`` frames;
        ``ValueError`` if nothing of it is left.
        """
        stop = num_available if stop is None else min(stop, num_available)
        if not 0 <= start < stop:
            raise ValueError(f"frame window [{start}, {stop}) is empty in a video of {num_available} frames")
        room = stop - start - self.span
        if room <= 0:
            first = 0
        elif not self.random_start:
            first = room // 2
        else:
            first = int(np.random.default_rng([self.seed, epoch, index]).integers(0, room + 1))
        return start + frame_indices(stop - start, self.num_frames, self.stride, first)


def epoch_order(
    num_items: int,
    epoch: int,
    shuffle: bool,
    seed: int = 0,
    shard_id: int = 0,
    num_shards: int = 1,
    batch_size: int = 1,
    drop_last: bool = False,
) -> np.ndarray:
    """``int64``: the items shard ``shard_id`` visits in ``epoch``, batch by batch.

    Every shard draws the same order (a permutation seeded with ``(seed, epoch)`` when
    ``shuffle``, else ``0..num_items-1``) and cuts it into global batches of
    ``batch_size × num_shards`` items; shard ``k`` takes the ``k``-th ``batch_size`` items
    of each. So the shards' ``i``-th batches, one after another, are exactly the ``i``-th
    batch of a single process with batch ``batch_size × num_shards``: several processes
    see what one does. With ``drop_last`` an incomplete last global batch is dropped;
    otherwise the order wraps round to a multiple of ``num_shards`` (a few items twice,
    as torch's ``DistributedSampler`` pads) and the last global batch is split evenly, so
    all shards have the same length. With ``batch_size`` 1 this is
    ``DistributedSampler``'s order.
    """
    if num_items < 1:
        raise ValueError(f"no items to order (num_items={num_items})")
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(num_items) if shuffle else np.arange(num_items)
    per_global = batch_size * num_shards
    if drop_last:
        order = order[: num_items // per_global * per_global]
    else:
        order = np.resize(order, -(-num_items // num_shards) * num_shards)  # wraps round
    full = len(order) // per_global * per_global
    whole = order[:full].reshape(-1, num_shards, batch_size)[:, shard_id].reshape(-1)
    last = order[full:].reshape(num_shards, -1)[shard_id]
    return np.concatenate([whole, last]).astype(np.int64)


def frame_indices(num_available: int, num_frames: int, stride: int, start: int) -> np.ndarray:
    """``int64 [num_frames]``: ``start + stride * arange(num_frames)``, clamped to the last frame.

    Clamping repeats the last frame when a video is shorter than the window.
    """
    return np.minimum(start + stride * np.arange(num_frames, dtype=np.int64), num_available - 1)


def frame_rate(stream: av.video.stream.VideoStream) -> tuple[Fraction, str]:
    """A video stream's frame rate, and a note when the header's own was not believed.

    The first of the header's average rate and the rate FFmpeg guesses from the
    timestamps that lies in ``[MIN_FPS, MAX_FPS]`` (what the face-crop cache can hold);
    :data:`DEFAULT_FPS` when neither does. A broken header can claim any rate (0, 24000
    fps, a frame every 50 days); the note says which was not used.
    """
    claimed = [Fraction(rate) for rate in (stream.average_rate, stream.guessed_rate) if rate]
    usable = [rate for rate in claimed if MIN_FPS <= rate <= MAX_FPS]
    rate = usable[0] if usable else DEFAULT_FPS
    if not claimed or rate == claimed[0]:
        return rate, ""
    return rate, f"the header's frame rate {float(claimed[0]):g} is outside [{MIN_FPS:g}, {MAX_FPS:g}]; using {rate}"


def video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    """The first video stream of an open container; ``ValueError`` when it has none, or
    none that this FFmpeg can decode (a damaged header can name a codec that does not exist)."""
    if not container.streams.video:
        raise ValueError(f"{path} has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise ValueError(f"cannot decode {path}: no decoder for its video stream")
    return stream


_THREAD = threading.local()


def rgb_array(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as ``uint8 [H, W, 3]`` RGB, the same bytes as PyAV's
    ``frame.to_ndarray(format="rgb24")``.

    That call sets up a new swscale context for every frame; this reuses one per thread
    (rebuilt only when the frame's size or format changes). Decoding and converting a 224²
    MJPEG frame: 0.35 ms against 0.65 on the 2-core EPYC (``pytest benchmarks/test_loader.py
    -k rgb --benchmark-only``); the first run's 1000 steps took 5 min 40 s against 6 min 21 s.
    """
    reformatter = getattr(_THREAD, "reformatter", None)
    if reformatter is None:
        reformatter = _THREAD.reformatter = VideoReformatter()
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def read_frames(path: str | Path, indices: np.ndarray) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) with PyAV.

    Returns ``uint8 [len(indices), H, W, 3]`` RGB. Raises ``FileNotFoundError`` for a
    missing file, ``ValueError`` if it cannot be decoded or ends before the largest index.
    """
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container, path)
            if stream.codec_context.codec.intra_only:
                got = _read_intra_frames(container, stream, wanted, last)
            if last not in got:  # inter-frame codecs, or an intra-only stream that did not decode packet by packet
                container.seek(0)
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        got[i] = rgb_array(frame)
                    if i == last:
                        break
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode {path}: {e}") from e
    if last not in got:
        raise ValueError(f"{path} ends before frame {last}")
    return np.stack([got[int(i)] for i in indices])


def _read_intra_frames(container, stream, wanted: set[int], last: int) -> dict[int, np.ndarray]:
    """Frames of an intra-only stream (MJPEG: every packet one whole picture), decoding
    only the packets wanted — at stride 4 a quarter of the work. Returns ``{}`` when a
    packet does not give exactly one frame, and the caller decodes everything instead."""
    got: dict[int, np.ndarray] = {}
    i = 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the end-of-stream flush packet holds no picture
            continue
        if i in wanted:
            frames = packet.decode()
            if len(frames) != 1:
                return {}
            got[i] = rgb_array(frames[0])
        if i == last:
            break
        i += 1
    return got


def count_frames(path: str | Path) -> int:
    """Number of video frames: the container's count, or a full decode where it has none."""
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container, path)
            if stream.frames > 0:
                return stream.frames
            return sum(1 for _ in container.decode(stream))
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot read {path}: {e}") from e


def normalise_clip(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` RGB → ``float32 [3, T, H, W]``: scaled to [0, 1], then
    normalised with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`."""
    mean = 255.0 * torch.tensor(IMAGENET_MEAN).view(3, 1)
    inv_std = 1.0 / (255.0 * torch.tensor(IMAGENET_STD).view(3, 1))
    # Move the bytes channel-first before widening them, and normalise each channel as
    # one long contiguous row: 4x faster than broadcasting over a last dimension of 3.
    planes = frames.permute(3, 0, 1, 2).reshape(3, -1).float()
    return planes.sub_(mean).mul_(inv_std).view(3, *frames.shape[:3])


def clip_to_frames(clip: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalise_clip`: normalised ``float [3, T, H, W]`` (any device)
    → ``uint8 [T, H, W, 3]`` RGB, values outside [0, 255] clipped."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    rgb = (clip.detach().float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 3, 0)
    return (rgb * 255).round().to(torch.uint8).numpy()


class ClipDataset(Dataset):
    """Fixed-length clips from a list of :class:`ClipItem`.

    Item ``i`` is a dict:

    - ``clip``: ``float32 [3, T, H, W]``, RGB scaled to [0, 1] then normalised with the
      ImageNet mean and std (:func:`normalise_clip`);
    - ``region_map``: ``uint8 [T, H, W]`` of :class:`fmae.face.FaceRegion` ids from the
      ``<clip>.regions.npz`` sidecar (only when ``with_regions``);
    - ``label``: ``int64 []`` (class, or :data:`NO_LABEL`) or ``float32 []`` (score),
      see :func:`label_dtype`;
    - ``frame_index``: ``int64 [T]``, the video frames taken;
    - ``index``: ``int64 []``, ``i``;
    - ``path``: ``str``, the video file.

    Frames are chosen by a :class:`ClipSampler` with the dataset's ``epoch`` (call
    :meth:`set_epoch` to move on). Frames keep the video's resolution (no resize or crop).
    """

    def __init__(
        self,
        items: Sequence[ClipItem],
        num_frames: int = 16,
        stride: int = 2,
        random_start: bool = True,
        seed: int = 0,
        with_regions: bool = True,
    ) -> None:
        self.sampler = ClipSampler(num_frames, stride, random_start, seed)
        self.items = [ClipItem(*item) for item in items]
        if not self.items:
            raise ValueError("no items to draw clips from")
        self.label_dtype = label_dtype(self.items)
        self.with_regions, self.epoch = with_regions, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh clips: item ``i`` of epoch ``e`` uses seed ``(seed, e, i)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.clip(index, self.epoch)

    def clip(self, index: int, epoch: int) -> dict:
        """Item ``index`` as drawn in ``epoch`` (``self[index]`` uses :attr:`epoch`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        path, label, start, stop = self.items[index]
        n = count_frames(path)
        idx = self.sampler.indices(index, epoch, n, start, stop)
        frames = torch.from_numpy(read_frames(path, idx))  # [T, H, W, 3] uint8
        item = {
            "clip": normalise_clip(frames),
            "label": torch.from_numpy(label_array(label, self.label_dtype)),
            "frame_index": torch.from_numpy(idx),
            "index": torch.tensor(index, dtype=torch.int64),
            "path": str(path),
        }
        if self.with_regions:
            item["region_map"] = torch.from_numpy(load_region_maps(path, idx, n, tuple(frames.shape[1:3])))
        return item


class VideoClipDataset(ClipDataset):
    """:class:`ClipDataset` over one split of a DAiSEE-layout folder (:func:`list_clips`),
    labelled with the level in ``column``."""

    def __init__(
        self,
        root: str | Path,
        split: str = "Train",
        num_frames: int = 16,
        stride: int = 2,
        random_start: bool = True,
        seed: int = 0,
        column: str = "Engagement",
        with_regions: bool = True,
    ) -> None:
        ClipSampler(num_frames, stride)  # check the arguments before touching the disk
        super().__init__(list_clips(root, split, column), num_frames, stride, random_start, seed, with_regions)
