"""The one door to batches of clips: :func:`make_loader` picks DALI or plain PyTorch.

Both backends read the same :class:`fmae.data.clips.ClipItem` list (from an adapter in
:mod:`fmae.data.datasets`), visit items in the same order (:func:`epoch_order`), take the
same frames (:class:`ClipSampler`) and yield the same dicts, one epoch per ``iter()``:

- ``clip``: ``float32 [B, 3, T, H, W]``, RGB normalised with the ImageNet mean and std;
- ``region_map``: ``uint8 [B, T, H, W]`` :class:`fmae.face.FaceRegion` ids of the same
  frames (when ``with_regions``);
- ``label``: ``int64 [B]`` (class; :data:`fmae.data.clips.NO_LABEL` when unlabelled) or
  ``float32 [B]`` (score);
- ``frame_index``: ``int64 [B, T]`` video frames taken; ``index``: ``int64 [B]`` items.

``clip``, ``region_map`` and ``label`` are on ``device``; the index tensors stay on the
CPU. The backend choice lives here only: ``"dali"`` where ``nvidia.dali`` imports, else
``"torch"``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fmae.data.clips import ClipDataset, ClipItem, epoch_order
from fmae.data.datasets import list_items
from fmae.data.region_maps import region_map_path
from fmae.runtime.owner import exit_with

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("dali", "torch")
ON_DEVICE: tuple[str, ...] = ("clip", "region_map", "label")
"""Batch entries that loaders put on their device; the rest stay on the CPU."""


class ClipLoader(Protocol):
    """What both backends provide."""

    items: list[ClipItem]
    batch_size: int
    epoch: int

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...
    def set_epoch(self, epoch: int) -> None: ...


def dali_available() -> bool:
    """Whether ``nvidia.dali`` is installed."""
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # no ``nvidia`` namespace at all
        return False


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` → ``"dali"`` if installed, else ``"torch"``; ``"dali"`` without DALI
    raises ``ImportError`` with the install command."""
    if backend == "auto":
        return "dali" if dali_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "dali" and not dali_available():
        raise ImportError(
            "backend='dali' needs NVIDIA DALI: pip install nvidia-dali-cuda130 (or pip install fmae[dali])"
        )
    return backend


class _EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, item)`` for this shard's items in the order :func:`epoch_order` gives for
    :attr:`epoch`; the epoch travels with each index, so persistent workers need no update."""

    def __init__(
        self, num_items: int, shuffle: bool, seed: int, shard_id: int, num_shards: int, batch_size: int, drop_last: bool
    ) -> None:
        self.args = (num_items, shuffle, seed, shard_id, num_shards, batch_size, drop_last)
        self.epoch = self.skip = 0
        self._len = len(epoch_order(num_items, 0, False, 0, shard_id, num_shards, batch_size, drop_last))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """This epoch's keys, less the first :attr:`skip` (a resumed epoch's done part)."""
        n, shuffle, seed, shard_id, num_shards, batch_size, drop_last = self.args
        order = epoch_order(n, self.epoch, shuffle, seed, shard_id, num_shards, batch_size, drop_last)[self.skip :]
        return ((self.epoch, i) for i in order.tolist())

    def __len__(self) -> int:
        return self._len


class EpochClips(Dataset):
    """``dataset.clip(item, epoch)`` for ``(epoch, item)`` keys (:class:`_EpochSampler`'s),
    without ``path`` (DALI batches have no strings): the epoch travels with each key, so
    worker processes draw each epoch's clip windows without being told."""

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        item = self.dataset.clip(index, epoch)
        del item["path"]
        return item


class TorchClipLoader:
    """The plain PyTorch path: a :class:`ClipDataset` (PyAV decoding) in a ``DataLoader``
    with ``num_workers`` persistent worker processes (started by a fork server); same arguments and batches as
    :class:`fmae.data.dali.DaliClipLoader` (``device`` instead of ``device_id``)."""

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
        device: str | torch.device = "cpu",
        num_workers: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 1 or start_batch < 0:
            raise ValueError(f"batch_size must be >= 1 and start_batch >= 0, got {batch_size}, {start_batch}")
        self.dataset = ClipDataset(items, num_frames, stride, random_start, seed, with_regions)
        self.items, self.batch_size, self.epoch = self.dataset.items, batch_size, epoch
        self._start_batch = start_batch
        self.device = torch.device(device)
        self._sampler = _EpochSampler(len(self.items), shuffle, seed, shard_id, num_shards, batch_size, drop_last)
        # The sampler yields whole batches only (epoch_order fills or drops the last one).
        self._loader = DataLoader(
            EpochClips(self.dataset),
            batch_size=batch_size,
            sampler=self._sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=self.device.type == "cuda",
            # A fork copies the locks that other threads (torch's, PyAV's, DALI's) hold at that
            # moment, and a worker that needs one waits forever: CI hung so. A fork server is
            # forked once, before any of those threads exist in it.
            multiprocessing_context="forkserver" if num_workers > 0 else None,
            worker_init_fn=functools.partial(_exit_with_owner, os.getpid()) if num_workers > 0 else None,
        )

    def __len__(self) -> int:
        return len(self._loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._sampler.epoch, self._sampler.skip = self.epoch, self._start_batch * self.batch_size
        self.epoch, self._start_batch = self.epoch + 1, 0
        batches = iter(self._loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (EOFError, ConnectionError) as e:
                if self._loader.num_workers == 0 or "in DataLoader worker process" in str(e):
                    raise  # the dataset's own error (a worker's is re-raised here, named so)
                # A worker killed (by the OOM killer, say) while its batch waits in the queue: this
                # process can no longer fetch the batch's shared memory from it. Torch's own message
                # comes only when the queue is empty, as the workers are the fork server's children.
                raise RuntimeError(
                    f"a DataLoader worker exited unexpectedly while sending a batch ({type(e).__name__}); "
                    "was it killed, e.g. for memory? Fewer --num-workers or a smaller batch use less"
                ) from e
            for key in ON_DEVICE:
                if key in batch:
                    batch[key] = batch[key].to(self.device, non_blocking=True)
            yield batch


def _exit_with_owner(owner: int, worker_id: int) -> None:
    """A torch worker's init: see :mod:`fmae.runtime.owner`."""
    exit_with(owner)


def with_region_maps(items: list[ClipItem]) -> list[ClipItem]:
    """The items whose video has a region-map sidecar; the others are logged and dropped."""
    kept = [it for it in items if region_map_path(it.path).is_file()]
    if len(kept) < len(items):
        lost = sorted({str(it.path) for it in items} - {str(it.path) for it in kept})
        log.warning(
            "%d videos have no region map (e.g. %s); skipped (build them with the face pipeline, or "
            "with_regions=False)",
            len(lost),
            lost[0],
        )
    if not kept:
        raise FileNotFoundError(
            f"none of the {len(items)} items has a region map (<stem>.regions.npz beside the video): "
            "make them with python -m fmae.preprocess SRC OUT (without --no-regions) and use OUT"
        )
    return kept


def make_loader(
    root: str | Path | None = None,
    split: str | None = None,
    *,
    dataset: str = "daisee",
    items: Sequence[ClipItem] | None = None,
    batch_size: int = 8,
    num_frames: int = 16,
    stride: int = 2,
    random_start: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    with_regions: bool = True,
    drop_last: bool = False,
    shard_id: int = 0,
    num_shards: int = 1,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    backend: str = "auto",
    **adapter_options,
) -> ClipLoader:
    """Batches of ``num_frames``-frame clips (frames ``stride`` apart) from a cached data set.

    Args:
        root, split, dataset, adapter_options: the items, from
            :func:`fmae.data.datasets.list_items` (``dataset`` one of ``"daisee"``,
            ``"emotiw"``, ``"folder"``, ``"fer"``); or pass ``items`` instead.
        random_start: a seeded random window per item and epoch, else centred.
        shuffle: a seeded random item order per epoch, else the items' order.
        with_regions: also load region maps; items without a sidecar are logged and
            skipped.
        shard_id, num_shards: this process's share (distributed training): its batches
            are the ``shard_id``-th ``batch_size`` items of each global batch of
            ``batch_size × num_shards`` (:func:`fmae.data.clips.epoch_order`), so several
            processes together see what one process with the global batch sees.
        drop_last: drop an incomplete last global batch; otherwise it is filled by
            wrapping round to the epoch's first items (so every batch is full).
        device: ``"cpu"`` or ``"cuda:N"``; DALI then decodes on GPU ``N`` (NVDEC).
        num_workers: worker processes that read files (and, for ``"torch"``, decode).
        epoch: the first ``iter()``'s epoch (to resume); each ``iter()`` runs the next.
        start_batch: the first ``iter()`` starts at this batch of its epoch (to resume
            mid-epoch: the batches are those an uninterrupted run gives); later ones at 0.
        backend: ``"auto"`` (DALI when installed), ``"dali"`` or ``"torch"``.

    Returns:
        A :class:`ClipLoader`; see the module docstring for the batches.
    """
    if items is None:
        if root is None:
            raise ValueError("make_loader needs a root folder or items")
        items = list_items(dataset, root, split, **adapter_options)
    elif adapter_options:
        raise ValueError(f"adapter options {sorted(adapter_options)} need root, not items")
    items = [ClipItem(*it) for it in items]
    if with_regions:
        items = with_region_maps(items)
    device = torch.device(device)
    common = dict(
        num_frames=num_frames,
        stride=stride,
        random_start=random_start,
        shuffle=shuffle,
        seed=seed,
        with_regions=with_regions,
        drop_last=drop_last,
        shard_id=shard_id,
        num_shards=num_shards,
        num_workers=num_workers,
        epoch=epoch,
        start_batch=start_batch,
    )
    if resolve_backend(backend) == "dali":
        from fmae.data.dali import DaliClipLoader

        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"DALI runs on the CPU or a CUDA GPU, not {device}")
        device_id = None if device.type == "cpu" else (device.index or 0)
        return DaliClipLoader(items, batch_size, device_id=device_id, **common)
    return TorchClipLoader(items, batch_size, device=device, **common)
