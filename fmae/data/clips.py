"""Clips from a DAiSEE-layout folder: label CSVs, PyAV decoding and a torch Dataset.

DAiSEE's layout, which the synthetic set (:mod:`fmae.data.synthetic`) copies::

    ROOT/DataSet/{Train,Validation,Test}/<subject>/<clip>/<clip>.avi
    ROOT/Labels/{Train,Validation,Test}Labels.csv   # ClipID,Boredom,Engagement,Confusion,Frustration␣

The real CSVs end their header with ``"Frustration "`` (a trailing space) and give
``ClipID`` with its extension (``1100011002.avi``). Region maps, when a clip has them,
sit beside the video as ``<clip>.regions.npz`` holding ``regions``: ``uint8 [T, H, W]``
of :class:`fmae.face.FaceRegion` ids, one map per video frame.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("Train", "Validation", "Test")
LABEL_COLUMNS: tuple[str, ...] = ("ClipID", "Boredom", "Engagement", "Confusion", "Frustration ")
"""DAiSEE's header, byte for byte (the last name really ends in a space)."""
VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4")
REGION_SUFFIX = ".regions.npz"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def label_file(root: str | Path, split: str) -> Path:
    """``ROOT/Labels/<split>Labels.csv``; ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(root) / "Labels" / f"{split}Labels.csv"


def region_map_path(video: str | Path) -> Path:
    """The region-map sidecar of a video: ``<dir>/<stem>.regions.npz``."""
    video = Path(video)
    return video.with_name(video.stem + REGION_SUFFIX)


def read_labels(csv_path: str | Path, column: str = "Engagement") -> dict[str, int]:
    """``{ClipID: level}`` from a DAiSEE label CSV, in file order.

    Header names are compared without surrounding spaces, so ``"Frustration "`` and
    ``"Frustration"`` both work. Raises ``ValueError`` naming the line on a missing
    column, a non-integer level or a repeated ClipID.
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
            if clip_id in labels:
                raise ValueError(f"{csv_path}:{line}: ClipID {clip_id} appears twice")
            labels[clip_id] = level
    return labels


def list_clips(root: str | Path, split: str, column: str = "Engagement") -> list[tuple[Path, int]]:
    """``(video path, level)`` for every labelled clip of a split that exists on disk.

    Videos are matched to ClipIDs by file stem, so a ``.mp4`` on disk matches an
    ``.avi`` in the CSV (DAiSEE has a few). Labelled clips without a video are skipped
    with a logged warning; a split with none raises ``FileNotFoundError``.
    """
    labels = read_labels(label_file(root, split), column)
    split_dir = Path(root) / "DataSet" / split
    videos = {p.stem: p for p in split_dir.glob("*/*/*") if p.suffix.lower() in VIDEO_SUFFIXES}
    items, missing = [], []
    for clip_id, level in labels.items():
        video = videos.get(Path(clip_id).stem)
        if video is None:
            missing.append(clip_id)
        else:
            items.append((video, level))
    if missing:
        log.warning("%s: %d labelled clips have no video under %s (e.g. %s); skipped", split, len(missing), split_dir, missing[0])
    if not items:
        raise FileNotFoundError(f"no labelled videos of split {split} under {split_dir}")
    return items


def frame_indices(num_available: int, num_frames: int, stride: int, start: int) -> np.ndarray:
    """``int64 [num_frames]``: ``start + stride * arange(num_frames)``, clamped to the last frame.

    Clamping repeats the last frame when a video is shorter than the window.
    """
    return np.minimum(start + stride * np.arange(num_frames, dtype=np.int64), num_available - 1)


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
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i == last:
                    break
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode {path}: {e}") from e
    if last not in got:
        raise ValueError(f"{path} ends before frame {last}")
    return np.stack([got[int(i)] for i in indices])


def count_frames(path: str | Path) -> int:
    """Number of video frames: the container's count, or a full decode where it has none."""
    try:
        with av.open(str(path)) as container:
            n = container.streams.video[0].frames
            if n > 0:
                return n
            return sum(1 for _ in container.decode(video=0))
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot read {path}: {e}") from e


class VideoClipDataset(Dataset):
    """Fixed-length clips from one split of a DAiSEE-layout folder.

    Item ``i`` is a dict:

    - ``clip``: ``float32 [3, T, H, W]``, RGB scaled to [0, 1] then normalised with the
      ImageNet mean and std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`);
    - ``region_map``: ``uint8 [T, H, W]`` of :class:`fmae.face.FaceRegion` ids from the
      ``<clip>.regions.npz`` sidecar (only when ``with_regions``);
    - ``label``: ``int64 []``, the level in ``column``;
    - ``frame_index``: ``int64 [T]``, the video frames taken;
    - ``path``: ``str``, the video file.

    ``T = num_frames`` frames ``stride`` apart. With ``random_start`` the window's
    start is drawn uniformly from a generator seeded by ``(seed, epoch, i)`` — the same
    clip for the same item in any worker; call :meth:`set_epoch` to move on — else the
    window is centred. Frames keep the video's resolution (no resize or crop).
    """

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
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
        self.items = list_clips(root, split, column)
        self.num_frames, self.stride = num_frames, stride
        self.random_start, self.seed, self.epoch = random_start, seed, 0
        self.with_regions = with_regions
        self._mean = 255.0 * torch.tensor(IMAGENET_MEAN)
        self._inv_std = 1.0 / (255.0 * torch.tensor(IMAGENET_STD))

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh random starts: item ``i`` of epoch ``e`` uses seed ``(seed, e, i)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _start(self, index: int, num_available: int) -> int:
        room = num_available - ((self.num_frames - 1) * self.stride + 1)
        if room <= 0:
            return 0
        if not self.random_start:
            return room // 2
        return int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, room + 1))

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        path, label = self.items[index]
        n = count_frames(path)
        idx = frame_indices(n, self.num_frames, self.stride, self._start(index, n))
        frames = torch.from_numpy(read_frames(path, idx))  # [T, H, W, 3] uint8
        # Normalise while channels are last and contiguous: strided maths is much slower.
        clip = frames.float().sub_(self._mean).mul_(self._inv_std).permute(3, 0, 1, 2).contiguous()
        item = {"clip": clip, "label": torch.tensor(label, dtype=torch.int64), "frame_index": torch.from_numpy(idx), "path": str(path)}
        if self.with_regions:
            item["region_map"] = torch.from_numpy(self._regions(path, idx, n, tuple(frames.shape[1:3])))
        return item

    @staticmethod
    def _regions(path: Path, idx: np.ndarray, num_frames: int, hw: tuple[int, int]) -> np.ndarray:
        sidecar = region_map_path(path)
        if not sidecar.exists():
            raise FileNotFoundError(f"{path} has no region map {sidecar.name}; build one with the face pipeline or pass with_regions=False")
        with np.load(sidecar) as npz:
            regions = npz["regions"]
        if regions.dtype != np.uint8 or regions.shape != (num_frames, *hw):
            raise ValueError(f"{sidecar}: expected uint8 {(num_frames, *hw)}, got {regions.dtype} {regions.shape}")
        return regions[idx]
