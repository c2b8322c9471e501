"""The DALI clip loader: cached face clips decoded by DALI (CPU, or NVDEC on a GPU) into PyTorch.

One pipeline serves both devices; only ``device_id`` changes (``None``: CPU decoding and
normalising; ``N``: the ``"mixed"`` NVDEC decoder and GPU operators on GPU ``N``)::

    external_source (Python, in worker processes)      per clip: the file's bytes, the
        │                                              frame indices to take, label, item
        │                                              index, region maps of those frames
        ├─ encoded ─▶ decoders.video(frames=indices) ─▶ uint8 [T, H, W, 3]
        │                  ─▶ crop_mirror_normalize ─▶ float32 [3, T, H, W]  ("clip")
        ├─ indices ─────────────────────────────────▶ "frame_index"
        └─ region maps (sliced with the same indices) ▶ "region_map"

The Python side chooses the frames (:class:`fmae.data.clips.ClipSampler`, item order
:func:`fmae.data.clips.epoch_order`) and hands the *same* index array to the decoder's
``frames`` argument and to the region-map slice, so maps and frames match by
construction, and the clips are exactly those the plain PyTorch loader
(:class:`fmae.data.loader.TorchClipLoader`) gives for the same seed and epoch.

DALI decodes MJPEG, VP8 and VP9 on the CPU; H.264, HEVC, MPEG-4 and AV1 only on the GPU.
The cache written by the face pipeline uses a codec both can read.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
from nvidia.dali import fn, types
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from fmae.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipItem,
    ClipSampler,
    count_frames,
    epoch_order,
    label_array,
    label_dtype,
)
from fmae.data.region_maps import load_region_maps
from fmae.runtime.owner import exit_with

_DALI_TYPE = {np.dtype(np.int64): types.INT64, np.dtype(np.float32): types.FLOAT}
OUTPUTS: tuple[str, ...] = ("clip", "frame_index", "label", "index", "region_map")
"""The pipeline's outputs in order (``region_map`` only with region maps)."""


class ClipSource:
    """The pipeline's ``external_source``: batch ``i`` of an epoch, computed from the
    batch number and epoch alone (DALI may run it in several worker processes).

    Returns per clip: ``uint8 [bytes]`` (the whole file), ``int32 [T]`` frame indices,
    the label (0-d ``int64`` or ``float32``), ``int64 []`` item index and, with
    ``with_regions``, ``uint8 [T, H, W]`` region maps of those frames.
    """

    def __init__(
        self,
        items: Sequence[ClipItem],
        sampler: ClipSampler,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        shard_id: int,
        num_shards: int,
        with_regions: bool,
        first_epoch: int,
        first_batch: int = 0,
    ) -> None:
        self.items, self.sampler, self.batch_size = list(items), sampler, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.shard_id, self.num_shards = shard_id, num_shards
        self.with_regions, self.first_epoch, self.first_batch = with_regions, first_epoch, first_batch
        self.label_dtype = label_dtype(self.items)
        self.owner = os.getpid()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if os.getpid() != self.owner:  # unpickled in one of DALI's worker processes
            exit_with(self.owner)

    def order(self, epoch: int) -> np.ndarray:
        return epoch_order(
            len(self.items),
            epoch,
            self.shuffle,
            self.sampler.seed,
            self.shard_id,
            self.num_shards,
            self.batch_size,
            self.drop_last,
        )

    def batch_indices(self, epoch: int, iteration: int) -> np.ndarray | None:
        """The item indices of batch ``iteration`` of ``epoch`` (counted from ``first_batch``
        in ``first_epoch``); ``None`` past the end."""
        if epoch == self.first_epoch:
            iteration += self.first_batch
        order = self.order(epoch)
        chunk = order[iteration * self.batch_size : (iteration + 1) * self.batch_size]
        return chunk if len(chunk) else None

    def __call__(self, info) -> tuple[list[np.ndarray], ...]:
        epoch = self.first_epoch + info.epoch_idx
        chunk = self.batch_indices(epoch, info.iteration)
        if chunk is None:
            raise StopIteration
        columns: tuple[list[np.ndarray], ...] = ([], [], [], [], []) if self.with_regions else ([], [], [], [])
        for index in chunk.tolist():
            path, label, start, stop = self.items[index]
            n = count_frames(path)
            idx = self.sampler.indices(index, epoch, n, start, stop)
            columns[0].append(np.fromfile(path, dtype=np.uint8))
            columns[1].append(idx.astype(np.int32))
            columns[2].append(label_array(label, self.label_dtype))
            columns[3].append(np.array(index, dtype=np.int64))
            if self.with_regions:
                columns[4].append(load_region_maps(path, idx, n))
        return columns


def _device(device_id: int | None) -> torch.device:
    if device_id is None:
        return torch.device("cpu")
    if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
        raise ValueError(f"device_id must be None (CPU) or a GPU index >= 0, got {device_id!r}")
    return torch.device("cuda", device_id)


def build_pipeline(
    source: ClipSource,
    device_id: int | None = None,
    num_threads: int | None = None,
    num_workers: int = 0,
    prefetch: int = 2,
) -> Pipeline:
    """The DALI pipeline over ``source``; outputs ``clip``, ``frame_index``, ``label``,
    ``index`` and, when ``source.with_regions``, ``region_map`` (see :data:`OUTPUTS`).

    ``device_id=None`` runs everything on the CPU; an int decodes with NVDEC and
    normalises on that GPU, where ``clip``, ``region_map`` and ``label`` then live.
    ``num_workers > 0`` runs the source in that many spawned worker processes: CUDA does not
    survive a fork, nor do the locks that torch's, PyAV's and DALI's threads hold at that moment.
    """
    on_gpu = _device(device_id).type == "cuda"
    if num_workers < 0 or prefetch < 1:
        raise ValueError(f"num_workers must be >= 0 and prefetch >= 1, got {num_workers}, {prefetch}")
    pipe = Pipeline(
        batch_size=source.batch_size,
        num_threads=num_threads or min(4, os.cpu_count() or 1),
        device_id=device_id,
        prefetch_queue_depth=prefetch,
        py_num_workers=max(num_workers, 1),
        py_start_method="spawn",
    )
    n_out = 5 if source.with_regions else 4
    with pipe:
        parallel = dict(parallel=True, prefetch_queue_depth=max(prefetch, num_workers)) if num_workers > 0 else {}
        outs = fn.external_source(
            source,
            num_outputs=n_out,
            batch=True,
            batch_info=True,
            **parallel,
            dtype=[types.UINT8, types.INT32, _DALI_TYPE[source.label_dtype], types.INT64, types.UINT8][:n_out],
            ndim=[1, 1, 0, 0, 3][:n_out],
            layout=["", "", "", "", "FHW"][:n_out],
        )
        encoded, frames, label, index = outs[:4]
        # pad_mode="none": an index past the real end is an error, not a black frame.
        video = fn.decoders.video(encoded, device="mixed" if on_gpu else "cpu", frames=frames, pad_mode="none")
        clip = fn.crop_mirror_normalize(
            video,
            dtype=types.FLOAT,
            output_layout="CFHW",
            mean=[255.0 * m for m in IMAGENET_MEAN],
            std=[255.0 * s for s in IMAGENET_STD],
        )
        outputs = [clip, frames, label.gpu() if on_gpu else label, index]
        if source.with_regions:
            outputs.append(outs[4].gpu() if on_gpu else outs[4])
        pipe.set_outputs(*outputs)
    return pipe


class DaliClipLoader:
    """Batches of clips from ``items`` through a DALI pipeline (see the module docstring).

    Iterating yields one epoch of dicts:

    - ``clip``: ``float32 [B, 3, T, H, W]``, ImageNet-normalised RGB;
    - ``region_map``: ``uint8 [B, T, H, W]`` (when ``with_regions``);
    - ``label``: ``int64 [B]`` or ``float32 [B]`` (:func:`fmae.data.clips.label_dtype`);
    - ``frame_index``: ``int64 [B, T]``, the frames taken; ``index``: ``int64 [B]``, the
      items (positions in :attr:`items`).

    ``clip``, ``region_map`` and ``label`` are on GPU ``device_id`` (CPU when ``None``),
    the two index tensors on the CPU. Each ``iter()`` runs the next epoch (:attr:`epoch`,
    starting at ``epoch``, the first from its batch ``start_batch``; :meth:`set_epoch`
    jumps); leaving an epoch early costs a pipeline rebuild at the next ``iter()``. A shard
    (``shard_id`` of ``num_shards``)
    gets the ``shard_id``-th ``batch_size`` items of every global batch (:func:`epoch_order`).
    """

    def __init__(
        self,
        items: Sequence[ClipItem],
        batch_size: int,
        *,
        num_frames: int = 16,
        stride: int = 2,
        random_start: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        with_regions: bool = True,
        drop_last: bool = False,
        shard_id: int = 0,
        num_shards: int = 1,
        device_id: int | None = None,
        num_threads: int | None = None,
        num_workers: int = 0,
        prefetch: int = 2,
        epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 1 or start_batch < 0:
            raise ValueError(f"batch_size must be >= 1 and start_batch >= 0, got {batch_size}, {start_batch}")
        self.items = [ClipItem(*item) for item in items]
        if not self.items:
            raise ValueError("no items to draw clips from")
        # Checks the shard arguments, and fixes the epoch's length (the same for every epoch).
        self._per_shard = len(epoch_order(len(self.items), 0, False, 0, shard_id, num_shards, batch_size, drop_last))
        self.sampler = ClipSampler(num_frames, stride, random_start, seed)
        self.batch_size, self.epoch, self._start_batch = batch_size, epoch, start_batch
        self._options = dict(
            shuffle=shuffle, drop_last=drop_last, shard_id=shard_id, num_shards=num_shards, with_regions=with_regions
        )
        self._build_args = dict(
            device_id=device_id, num_threads=num_threads, num_workers=num_workers, prefetch=prefetch
        )
        label_dtype(self.items)  # fails now on mixed labels, not in a worker
        self.device = _device(device_id)
        self._iterator: DALIGenericIterator | None = None
        self._source: ClipSource | None = None
        self._ready_for: int | None = None  # the epoch the live pipeline's next pass runs

    def __len__(self) -> int:
        return -(-self._per_shard // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run ``epoch``."""
        self.epoch = epoch

    def _build(self) -> None:
        self._close()
        self._source = ClipSource(
            self.items,
            self.sampler,
            self.batch_size,
            first_epoch=self.epoch,
            first_batch=self._start_batch,
            **self._options,
        )
        self._start_batch = 0  # a later rebuild starts its epoch at the beginning
        pipe = build_pipeline(self._source, **self._build_args)
        names = list(OUTPUTS if self._options["with_regions"] else OUTPUTS[:-1])
        self._iterator = DALIGenericIterator(pipe, names, auto_reset=True, prepare_first_batch=False)
        self._ready_for = self.epoch

    def _close(self) -> None:
        # Dropping the last references shuts the pipeline and its worker processes down.
        self._iterator, self._source, self._ready_for = None, None, None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._iterator is None or self._ready_for != self.epoch:
            self._build()
        epoch = self.epoch
        self.epoch += 1
        self._ready_for = None  # until this pass ends, the pipeline is mid-epoch
        iterator, source = self._iterator, self._source
        step = 0
        while True:
            try:
                out = next(iterator)[0]  # at the epoch's end: StopIteration, and the iterator resets
            except StopIteration:
                break
            except RuntimeError as e:
                self._close()
                chunk = source.batch_indices(epoch, step)
                paths = [] if chunk is None else [str(self.items[i].path) for i in chunk.tolist()]
                raise RuntimeError(f"DALI failed on batch {step} of epoch {epoch} (videos {paths}): {e}") from e
            step += 1
            yield self._batch(out)
        self._ready_for = self.epoch

    def _batch(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {
            "clip": out["clip"],
            "label": out["label"],
            "frame_index": out["frame_index"].long(),
            "index": out["index"],
        }
        if "region_map" in out:
            if out["region_map"].shape[-2:] != out["clip"].shape[-2:]:
                paths = sorted({str(self.items[i].path) for i in out["index"].tolist()})
                raise ValueError(
                    f"region maps {tuple(out['region_map'].shape)} do not fit the frames "
                    f"{tuple(out['clip'].shape)} in {paths}"
                )
            batch["region_map"] = out["region_map"]
        return batch
