"""Region-map sidecars: one ``uint8`` map of :class:`fmae.face.FaceRegion` ids per video
frame, kept beside the video as ``<stem>.regions.npz`` (:func:`region_map_path`).

The maps are stored in chunks of :data:`CHUNK` frames, each a compressed member of the
npz, with their shape ``int64 [3]`` (``T, H, W``) in ``regions_shape``. A clip then
inflates only the chunks its frames fall in: for a 16-frame clip of a 5-minute 224²
video that is 64 maps, not all 9000 (430 MiB), and a writer streams maps to disk
without holding the video's. Other per-frame arrays (boxes, ``has_face``, landmarks)
are plain members beside them. Sidecars written before the chunks, with the whole
array in one ``regions`` member, are still read.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from types import TracebackType

import numpy as np

CHUNK = 32
"""Frames per compressed member."""
COMPRESS_LEVEL = 3
"""zlib level of the members: 3 deflates a map ~4× faster than zlib's default 6 for ~1.8× the
bytes (1.5 KB a 224² map of a real face video against 0.8 KB; its MJPEG crop is ~8 KB)."""
_SHAPE = "regions_shape"
_LEGACY = "regions"


def region_map_path(video: str | os.PathLike) -> Path:
    """The sidecar of ``video``: ``<stem>.regions.npz`` in the same folder."""
    video = Path(video)
    return video.with_name(f"{video.stem}.regions.npz")


def _chunk_name(k: int) -> str:
    return f"regions_{k:06d}"


class RegionMapWriter:
    """Writes a sidecar map by map: ``write`` appends ``uint8 [n, H, W]`` maps (any ``n``),
    ``close`` (or leaving the ``with`` block without an error) adds ``arrays`` given to
    :meth:`add` and the shape. Memory holds at most one chunk of maps.

    ``path`` is the file written, as given (no suffix added), so an atomic writer can
    pass a temporary name.
    """

    def __init__(self, path: str | os.PathLike, hw: tuple[int, int]) -> None:
        self.hw = (int(hw[0]), int(hw[1]))
        self._zip = zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL, allowZip64=True
        )
        self._pending = np.empty((CHUNK, *self.hw), np.uint8)
        self._held = self._chunks = self.frames = 0
        self._extra: dict[str, np.ndarray] = {}

    def _member(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)

    def _flush(self) -> None:
        if self._held:
            self._member(_chunk_name(self._chunks), self._pending[: self._held])
            self._chunks += 1
            self._held = 0

    def write(self, maps: np.ndarray) -> None:
        """Append ``uint8 [n, H, W]`` maps (``H, W`` as given to the constructor)."""
        maps = np.asarray(maps)
        if maps.dtype != np.uint8 or maps.ndim != 3 or maps.shape[1:] != self.hw:
            raise ValueError(
                f"region maps must be uint8 [n, {self.hw[0]}, {self.hw[1]}], got {maps.dtype} {maps.shape}"
            )
        i = 0
        while i < len(maps):
            take = min(CHUNK - self._held, len(maps) - i)
            self._pending[self._held : self._held + take] = maps[i : i + take]
            self._held += take
            i += take
            if self._held == CHUNK:
                self._flush()
        self.frames += len(maps)

    def add(self, **arrays: np.ndarray) -> None:
        """Arrays stored beside the maps (under their keyword names) when the file closes."""
        if _SHAPE in arrays or any(k.startswith("regions") for k in arrays):
            raise ValueError(f"names starting with 'regions' are the maps' own, got {sorted(arrays)}")
        self._extra.update({k: np.asarray(v) for k, v in arrays.items()})

    def close(self) -> None:
        """Write the last chunk, the shape and the added arrays; finish the file."""
        self._flush()
        self._member(_SHAPE, np.array([self.frames, *self.hw], np.int64))
        for name, array in self._extra.items():
            self._member(name, array)
        self._zip.close()

    def __enter__(self) -> RegionMapWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._zip.close()  # a broken file: the caller's atomic writer throws it away


def save_region_maps(path: str | os.PathLike, regions: np.ndarray, **arrays: np.ndarray) -> None:
    """Write ``uint8 [T, H, W]`` ``regions`` (and ``arrays`` beside them) to the sidecar file ``path``."""
    regions = np.asarray(regions)
    if regions.ndim != 3:
        raise ValueError(f"region maps must be uint8 [T, H, W], got {regions.dtype} {regions.shape}")
    with RegionMapWriter(path, regions.shape[1:]) as writer:
        writer.write(regions)
        writer.add(**arrays)


def load_region_maps(
    video: str | os.PathLike,
    indices: np.ndarray | None = None,
    num_frames: int | None = None,
    hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """``uint8 [len(indices), H, W]``: the region maps of ``video``'s frames ``indices``
    (all of them when ``None``), inflating only the chunks that hold them.

    The sidecar must hold one map per video frame (``num_frames`` of them when given,
    of size ``hw`` when given): ``FileNotFoundError`` without one, ``ValueError`` naming
    the file when it does not fit or an index is out of range.
    """
    sidecar = region_map_path(video)
    if not sidecar.exists():
        raise FileNotFoundError(
            f"{video} has no region map {sidecar.name}; build one with the face pipeline or pass with_regions=False"
        )
    with np.load(sidecar) as npz:
        if _LEGACY in npz.files:
            regions = npz[_LEGACY]
            shape, dtype = regions.shape, regions.dtype
        else:
            shape, dtype = tuple(int(v) for v in npz[_SHAPE]), np.dtype(np.uint8)
        T = shape[0]
        want = (T if num_frames is None else num_frames, *(shape[1:] if hw is None else hw))
        if dtype != np.uint8 or len(shape) != 3 or tuple(shape) != tuple(want):
            raise ValueError(
                f"{sidecar}: expected uint8 {tuple(want)} (one map per video frame), got {dtype} {tuple(shape)}"
            )
        indices = np.arange(T) if indices is None else np.asarray(indices, np.int64)
        if indices.size and (indices.min() < -T or indices.max() >= T):
            raise ValueError(f"{sidecar}: frame indices {indices.min()}..{indices.max()} outside its {T} frames")
        if _LEGACY in npz.files:
            return regions[indices]
        indices = indices % T if T else indices
        out = np.empty((len(indices), *shape[1:]), np.uint8)
        for k in np.unique(indices // CHUNK).tolist():
            chunk = npz[_chunk_name(k)]
            rows = np.flatnonzero(indices // CHUNK == k)
            out[rows] = chunk[indices[rows] - k * CHUNK]
        return out
