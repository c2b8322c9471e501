"""Pooled features of a frozen encoder for labelled items, and their on-disk cache.

The frozen encoder sees every token of a clip (no masking); its final-normed tokens are
pooled to one vector (:func:`encode_clips`, :data:`POOLS`): ``mean``, the mean-pooled
``D`` vector (:meth:`fmae.model.FMAE.forward_features`; FMAE has no [CLS] token), or
``mean_std``, that and how much the tokens change over the clip (``2·D``). Each item (a
video, or a window of a long EmotiW video) gives ``views`` clips: the centred one, or
several at seeded random starts. Features are cached on disk, keyed by the encoder's
weights (:func:`fmae.weights.fingerprint`), the items (paths, windows, file sizes and
times), the clip sampling and the pooling, so probes with other seeds, heads,
optimiser settings or label columns reuse one encoder pass.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from fmae.data import ClipItem, make_loader
from fmae.model import FMAE
from fmae.runtime.device import autocast
from fmae.runtime.distributed import Distributed
from fmae.runtime.files import digest, write_tensors
from fmae.weights import fingerprint

log = logging.getLogger(__name__)

_VIEW_SEED = 0  # fixed, so the cached clips do not depend on the probe's seed
# Pre-training (fmae.pretraining) and prediction (fmae.downstream.predict) decode with PyAV; DALI's MJPEG
# decoder gives slightly other pixels (mean |Δ| 0.02, max 0.56 in normalised units), so the
# probe decodes like them and its encoder sees the pixels it was trained and is used on.
CLIP_LOADER = "torch"


POOLS: tuple[str, ...] = ("mean", "mean_std")
"""How the tokens of a clip become one feature vector (:func:`encode_clips`):

- ``mean``: the encoder's pooled features, :meth:`fmae.model.FMAE.forward_features`
  (``D``): the mean of the final-normed tokens (VideoMAE's and MAE's linear probe);
- ``mean_std``: statistics pooling over time (``2·D``): beside the mean of the tokens,
  how much each token changes during the clip: the standard deviation of every spatial
  position's token over the ``T'`` time slices, averaged over the positions. A mean
  over time and space keeps what a clip looks like and loses what happens in it
  (blinks, glances, head turns); the second half keeps that. The tokens are those of
  ``forward_features(clip, pool=False)``, so for FMAE's own encoders (pooling
  ``norm_mean``) the first half is exactly ``mean``'s vector.
"""


def pooled_dim(encoder: FMAE, pool: str) -> int:
    """Length of :func:`encode_clips`'s vectors for ``encoder`` and ``pool``."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return encoder.config.embed_dim * (2 if pool == "mean_std" else 1)


def encode_clips(encoder: FMAE, clip: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """``[B, pooled_dim]`` features of clips ``[B, C, T, H, W]`` (see :data:`POOLS`);
    differentiable (the caller sets ``no_grad`` and autocast)."""
    pooled_dim(encoder, pool)  # checks pool
    if pool == "mean":
        return encoder.forward_features(clip)
    tokens = encoder.forward_features(clip, pool=False)  # [B, N, D], N = T' · H' · W'
    t, h, w = encoder.config.grid
    motion = tokens.unflatten(1, (t, h * w)).std(dim=1, correction=0).mean(dim=1)
    return torch.cat([tokens.mean(dim=1), motion], dim=1)


class Features(NamedTuple):
    """Pooled encoder features of a list of items."""

    features: torch.Tensor
    """float32 ``[I, K, D]``: ``I`` items, ``K`` clips each."""
    labels: torch.Tensor
    """``[I]``: int64 classes or float32 scores."""
    paths: list[str]
    """The ``I`` items' video files (an EmotiW video gives several items)."""


def item_labels(items: Sequence[ClipItem]) -> torch.Tensor:
    """``[I]`` labels of ``items``: int64 when they are classes, float32 when scores;
    ``ValueError`` when an item is unlabelled or the kinds are mixed."""
    if any(it.label is None for it in items):
        raise ValueError(
            f"{sum(it.label is None for it in items)} of {len(items)} items have no label (e.g. {items[0].path})"
        )
    if len({isinstance(it.label, float) for it in items}) > 1:
        raise ValueError("items mix class and score labels")
    dtype = torch.float32 if isinstance(items[0].label, float) else torch.int64
    return torch.tensor([it.label for it in items], dtype=dtype)


def _cache_key(
    encoder: FMAE, items: Sequence[ClipItem], views: int, stride: int, dtype: torch.dtype, pool: str = "mean"
) -> str:
    files = []
    for it in items:
        stat = Path(it.path).stat()
        # Labels are left out: probes of other label columns reuse the same features.
        files.append([str(Path(it.path).resolve()), it.start, it.stop, stat.st_size, stat.st_mtime_ns])
    key = {
        "encoder": fingerprint(encoder),
        "items": files,
        "views": views,
        "view_seed": _VIEW_SEED,
        "num_frames": encoder.config.num_frames,
        "stride": stride,
        "dtype": str(dtype),
        "pool": pool,
        "version": 2,
    }
    return digest(key, 16)


@torch.no_grad()
def _encode(
    encoder: FMAE,
    items: Sequence[ClipItem],
    views: int,
    stride: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: bool,
    desc: str,
    env: Distributed | None,
    pool: str = "mean",
) -> torch.Tensor:
    """float32 ``[I, K, D]`` pooled features of every clip of every item: under a
    multi-process ``env`` each rank encodes its share and the shares are gathered."""
    encoder.eval()
    world, rank = (env.world, env.rank) if env is not None else (1, 0)
    done: list[torch.Tensor] = []  # the item indices of this rank's batches
    # Sharding inside the loader keeps every item's index, which seeds its clips: the
    # features do not depend on the number of processes.
    loader = make_loader(
        items=items,
        batch_size=batch_size,
        num_frames=encoder.config.num_frames,
        stride=stride,
        random_start=views > 1,
        shuffle=False,
        seed=_VIEW_SEED,
        with_regions=False,
        device=device,
        num_workers=num_workers,
        shard_id=rank,
        num_shards=world,
        backend=CLIP_LOADER,
    )
    size = encoder.config.img_size
    per_view: list[list[torch.Tensor]] = []
    with tqdm(
        total=len(loader.items) * views // world, disable=not progress, desc=desc, unit="clip", dynamic_ncols=True
    ) as bar:
        for view in range(views):
            loader.set_epoch(view)
            per_view.append([])
            for batch in loader:
                clip = batch["clip"]
                if tuple(clip.shape[-2:]) != (size, size):
                    raise ValueError(
                        f"clips such as {items[0].path} are {clip.shape[-2]}×{clip.shape[-1]} but the encoder "
                        f"takes {size}×{size}: preprocess the faces to that size, or probe an encoder of theirs"
                    )
                with autocast(device, dtype):
                    feats = encode_clips(encoder, clip, pool)
                per_view[view].append(feats.float().cpu())
                if view == 0:
                    done.append(batch["index"])
                bar.update(clip.shape[0])
    # Every view visits the items in the same order (shuffle is off), so rows line up.
    rows = torch.stack([torch.cat(feats) for feats in per_view], dim=1)
    index = torch.cat(done)
    if env is None:
        out = torch.zeros((len(items), *rows.shape[1:]))
        out[index] = rows
        return out
    return env.gather_rows(index, rows, len(items))


def extract_features(
    encoder: FMAE,
    items: Sequence[ClipItem],
    *,
    views: int = 1,
    stride: int = 2,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    desc: str = "features",
    env: Distributed | None = None,
    pool: str = "mean",
) -> Features:
    """Pooled features of the frozen ``encoder`` (on ``device``) for labelled ``items``.

    Clips are ``encoder.config.num_frames`` frames ``stride`` apart: the centred one when
    ``views == 1``, else ``views`` clips at random starts seeded per (view, item). With
    ``cache_dir`` the result is read from, or written to, ``<cache_dir>/<key>.safetensors``
    (key: see the module docstring); a cache hit runs no encoder pass. With a
    multi-process ``env`` each rank encodes its :meth:`~fmae.runtime.distributed.Distributed.share`
    of the items and every rank returns all the features; rank 0 writes the cache.
    ``pool`` is one of :data:`POOLS` (:func:`encode_clips`).
    """
    pooled_dim(encoder, pool)  # checks pool before any work
    items = [ClipItem(*it) for it in items]
    labels = item_labels(items)
    paths = [str(it.path) for it in items]
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{_cache_key(encoder, items, views, stride, dtype, pool)}.safetensors"
        if cache.is_file():
            log.info("%s: %d items from the cache %s", desc, len(items), cache)
            return Features(load_file(str(cache))["features"], labels, paths)
    feats = _encode(
        encoder, items, views, stride, batch_size, num_workers, torch.device(device), dtype, progress, desc, env, pool
    )
    if cache is not None and (env is None or env.main):
        write_tensors(cache, {"features": feats}, metadata={"paths": json.dumps(paths)})
    return Features(feats, labels, paths)
