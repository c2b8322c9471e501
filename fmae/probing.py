"""Linear probing (paper Algorithm 2, lines 9–14) and full fine-tuning of an FMAE encoder.

The pipeline that :func:`run_probe` drives (and ``python -m fmae.probe`` exposes):

1. **Encoder**: a pre-training checkpoint or an exported encoder
   (:func:`fmae.weights.load_model`), or with ``random_init`` the same architecture
   freshly initialised — the baseline that shows what pre-training adds.
2. **Features** (:func:`extract_features`): the frozen encoder sees every token of a
   clip (no masking); its final-normed tokens are mean-pooled to one ``D`` vector
   (:meth:`fmae.model.FMAE.forward_features`; FMAE has no [CLS] token). Each item
   (a video, or a window of a long EmotiW video) gives ``views`` clips: the centred
   one, or several at seeded random starts. Features are cached on disk, keyed by the
   encoder's weights (:func:`fmae.weights.fingerprint`), the items (paths, windows,
   file sizes and times) and the clip sampling, so probes with other seeds, heads,
   optimiser settings or label columns reuse one encoder pass.
3. **Probe** (:func:`train_probe`): a :class:`LinearProbe` trained with Adam,
   β = (0.5, 0.9), lr 1e-4, weight decay 0 (the paper's settings; lr and weight decay
   are configurable); cross-entropy for classes (optionally class-weighted, or with
   class-balanced sampling, for DAiSEE's imbalance), MSE for EmotiW's [0, 1] score.
   Before its linear layer the probe normalises the pooled feature: ``batchnorm`` is
   MAE's linear-probing recipe (BatchNorm without affine: features standardised with
   training statistics), ``layernorm`` is VideoMAE's ``fc_norm`` (a LayerNorm of the
   mean-pooled tokens), ``none`` a bare linear layer.
4. **Evaluation**: every clip of an item is scored and the class probabilities (or
   scores) averaged over the clips, then over the items of the same video; then
   :mod:`fmae.metrics` reports per video, beside the trivial baseline (the training
   set's majority class, or its mean score).

With ``finetune`` the encoder is trained too (end to end on fresh random clips each
epoch, minority classes oversampled when ``balance="sampler"``), and the fine-tuned
encoder is exported beside the probe.

Under ``torchrun`` (:class:`fmae.distributed.Distributed`) the ranks share the encoder
passes: each encodes every ``world``-th item and the features are gathered, so every
rank holds the same features and trains the same probe; fine-tuning is data-parallel
(DDP, ``batch_size`` the global batch). Rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from fmae.config import TrainConfig, _field, check_choices, to_yaml
from fmae.data import ClipItem, SyntheticConfig, fer_classes, list_items, make_loader
from fmae.device import resolve_dtype
from fmae.distributed import Distributed
from fmae.files import write_atomically
from fmae.metrics import classification_metrics, regression_metrics, save_confusion_png, write_report
from fmae.model import FMAE, MODEL_CONFIGS, get_config
from fmae.trainer import data_root as training_data_root
from fmae.weights import (ENCODER_PREFIXES, fingerprint, load_model, load_weights, save_encoder,
                          save_weights)

log = logging.getLogger(__name__)

PROBE_KIND = "fmae-probe"
BETAS: tuple[float, float] = (0.5, 0.9)
"""Adam's betas for the probe and for fine-tuning (paper III-A)."""
HEAD_NORMS: tuple[str, ...] = ("batchnorm", "layernorm", "none")
BALANCE: tuple[str, ...] = ("none", "weights", "sampler")
_VIEW_SEED = 0  # fixed, so the cached clips do not depend on the probe's seed
SYNTHETIC_SUBJECTS = 40
"""Subjects of the default (synthetic) probing set: 5 clips each, 60/20/20 % train/val/test."""
# Pre-training (fmae.trainer) and prediction (fmae.prediction) decode with PyAV; DALI's MJPEG
# decoder gives slightly other pixels (mean |Δ| 0.02, max 0.56 in normalised units), so the
# probe decodes like them and its encoder sees the pixels it was trained and is used on.
_LOADER = "torch"


@dataclass(frozen=True)
class Task:
    """What a probe learns: ``kind`` ``"classification"`` (cross-entropy; ``class_names``
    fixed, or ``None`` to take the data set's) or ``"regression"`` (MSE on a score in
    [0, 1]), from the items of the :mod:`fmae.data.datasets` adapter ``dataset``."""

    kind: str
    dataset: str
    class_names: tuple[str, ...] | None = None


TASKS: dict[str, Task] = {
    # DAiSEE's four engagement levels, named as in its paper.
    "daisee": Task("classification", "daisee", ("very low", "low", "high", "very high")),
    "emotiw": Task("regression", "emotiw"),
    "fer": Task("classification", "fer"),
}


@dataclass
class ProbeConfig:
    """Linear probing (or fine-tuning) of an FMAE encoder on a labelled data set."""

    checkpoint: str = _field("", "pre-training checkpoint (python -m fmae.train), its run folder (the newest valid "
                             "checkpoint) or an exported encoder (.safetensors with its .json); may be empty with "
                             "--random-init")
    random_init: bool = _field(False, "probe a freshly initialised encoder instead (the baseline): the checkpoint's "
                               "architecture if one is given, else --model/--img-size/--num-frames")
    model: str = _field("fmae_vit_tiny", "encoder size for --random-init without a checkpoint", tuple(MODEL_CONFIGS))
    img_size: int = _field(0, "clip side in pixels; 0: the checkpoint's (112 for a random init)")
    num_frames: int = _field(0, "frames per clip; 0: the checkpoint's (16 for a random init)")
    temporal_stride: int = _field(2, "take every k-th frame of the video")
    task: str = _field("daisee", "daisee: 4 engagement levels, DAiSEE layout (cross-entropy); emotiw: engagement score "
                       "in [0, 1], EmotiW layout (MSE); fer: expression classes, a folder per class (cross-entropy)",
                       tuple(TASKS))
    label_column: str = _field("Engagement", "DAiSEE label column (Boredom, Engagement, Confusion, Frustration)")
    data_root: str = _field("", "data set folder of face clips; empty: the built-in synthetic engagement set "
                            "(40 subjects, DAiSEE layout), preprocessed as for pre-training")
    train_split: str = _field("Train", "split the probe is trained on")
    eval_split: str = _field("Test", "split the metrics are reported on")
    train_views: int = _field(1, "clips per training item (1: centred; more: seeded random starts)")
    test_views: int = _field(1, "clips per evaluated item, predictions averaged (1: centred)")
    head_norm: str = _field("batchnorm", "normalisation before the linear layer: batchnorm (MAE's linear probe), "
                            "layernorm (VideoMAE's fc_norm) or none", HEAD_NORMS)
    balance: str = _field("none", "class imbalance: class-weighted loss, class-balanced sampling, or none", BALANCE)
    epochs: int = _field(100, "probe training epochs over the cached features")
    batch_size: int = _field(32, "clips per batch, for feature extraction and training")
    lr: float = _field(1e-4, "Adam learning rate (the paper's 1e-4)")
    weight_decay: float = _field(0.0, "Adam weight decay (the paper's 0)")
    finetune: bool = _field(False, "train the whole encoder with the head instead of a frozen-feature probe")
    finetune_epochs: int = _field(10, "epochs of full fine-tuning (with --finetune)")
    dtype: str = _field("auto", "compute dtype of the encoder: bf16 where the CPU/GPU is fast in it, else fp32",
                        ("auto", "bf16", "fp32"))
    device: str = _field("auto", "cpu, cuda, cuda:N or auto")
    num_workers: int = _field(2, "data-loading worker processes")
    cache_dir: str = _field("", "feature cache folder (share it between runs); empty: <out-dir>/features")
    out_dir: str = _field("runs/probe", "where probe weights, metrics and plots go")
    seed: int = _field(0, "seed of the probe's initialisation and data order (and of a random-init encoder)")

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("temporal_stride", "train_views", "test_views", "epochs", "batch_size", "finetune_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.img_size < 0 or self.num_frames < 0 or self.num_workers < 0:
            raise ValueError("img_size, num_frames and num_workers must be >= 0")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not self.checkpoint and not self.random_init:
            raise ValueError("give a checkpoint to probe, or random_init for the randomly initialised baseline")
        if TASKS[self.task].kind == "regression" and self.balance != "none":
            raise ValueError(f"balance {self.balance!r} is for classes; the {self.task} task is a regression")


# ----------------------------------------------------------------------------- probe


class LinearProbe(nn.Module):
    """A normalisation (see :data:`HEAD_NORMS`) then ``Linear(in_dim, out_dim)``.

    float ``[B, in_dim]`` features → ``[B, out_dim]`` logits (classification) or scores
    (regression, ``out_dim = 1``).
    """

    def __init__(self, in_dim: int, out_dim: int, norm: str = "batchnorm") -> None:
        super().__init__()
        if norm not in HEAD_NORMS:
            raise ValueError(f"norm must be one of {HEAD_NORMS}, got {norm!r}")
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"in_dim and out_dim must be positive, got {in_dim}, {out_dim}")
        self.in_dim, self.out_dim, self.norm_kind = in_dim, out_dim, norm
        if norm == "batchnorm":
            self.norm: nn.Module = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        else:
            self.norm = nn.Identity()
        self.linear = nn.Linear(in_dim, out_dim)
        # MAE's linear-probe initialisation: small weights, zero bias.
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features))


def save_probe(probe: LinearProbe, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``probe`` to ``path`` (``.safetensors``), and its shape plus ``meta`` (what a
    user of the probe needs: task, class names, clip sampling, encoder fingerprint) to
    the JSON beside it (:func:`fmae.weights.save_weights`)."""
    return save_weights(path, probe, PROBE_KIND, {"in_dim": probe.in_dim, "out_dim": probe.out_dim,
                                                  "norm": probe.norm_kind, "meta": meta})


def load_probe(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LinearProbe, dict[str, Any]]:
    """``(probe in eval mode, meta)`` from :func:`save_probe`'s files (local paths only)."""
    state, config = load_weights(path, PROBE_KIND, device)
    try:
        probe = LinearProbe(config["in_dim"], config["out_dim"], config["norm"]).to(device)
        probe.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path}: the tensors and config do not make a probe: {e}") from e
    return probe.eval(), config.get("meta", {})


# -------------------------------------------------------------------------- features


class Features(NamedTuple):
    """Pooled encoder features of a list of items."""

    features: torch.Tensor
    """float32 ``[I, K, D]``: ``I`` items, ``K`` clips each."""
    labels: torch.Tensor
    """``[I]``: int64 classes or float32 scores."""
    paths: list[str]
    """The ``I`` items' video files (an EmotiW video gives several items)."""


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def item_labels(items: Sequence[ClipItem]) -> torch.Tensor:
    """``[I]`` labels of ``items``: int64 when they are classes, float32 when scores;
    ``ValueError`` when an item is unlabelled or the kinds are mixed."""
    if any(it.label is None for it in items):
        raise ValueError(f"{sum(it.label is None for it in items)} of {len(items)} items have no label (e.g. {items[0].path})")
    if len({isinstance(it.label, float) for it in items}) > 1:
        raise ValueError("items mix class and score labels")
    dtype = torch.float32 if isinstance(items[0].label, float) else torch.int64
    return torch.tensor([it.label for it in items], dtype=dtype)


def _cache_key(encoder: FMAE, items: Sequence[ClipItem], views: int, stride: int, dtype: torch.dtype) -> str:
    files = []
    for it in items:
        stat = Path(it.path).stat()
        # Labels are left out: probes of other label columns reuse the same features.
        files.append([str(Path(it.path).resolve()), it.start, it.stop, stat.st_size, stat.st_mtime_ns])
    key = {"encoder": fingerprint(encoder), "items": files, "views": views, "view_seed": _VIEW_SEED,
           "num_frames": encoder.config.num_frames, "stride": stride, "dtype": str(dtype), "pool": "mean", "version": 2}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def _encode(encoder: FMAE, items: Sequence[ClipItem], views: int, stride: int, batch_size: int, num_workers: int,
            device: torch.device, dtype: torch.dtype, progress: bool, desc: str, env: Distributed | None) -> torch.Tensor:
    """float32 ``[I, K, D]`` pooled features of every clip of every item: under a
    multi-process ``env`` each rank encodes its share and the shares are gathered."""
    encoder.eval()
    world, rank = (env.world, env.rank) if env is not None else (1, 0)
    out = torch.zeros(len(items), views, encoder.config.embed_dim)
    # Sharding inside the loader keeps every item's index, which seeds its clips: the
    # features do not depend on the number of processes.
    loader = make_loader(items=items, batch_size=batch_size, num_frames=encoder.config.num_frames, stride=stride,
                         random_start=views > 1, shuffle=False, seed=_VIEW_SEED, with_regions=False, device=device,
                         num_workers=num_workers, shard_id=rank, num_shards=world, backend=_LOADER)
    size = encoder.config.img_size
    total = -(-len(items) // world) * views
    with tqdm(total=total, disable=not progress, desc=desc, unit="clip", dynamic_ncols=True) as bar:
        for view in range(views):
            loader.set_epoch(view)
            for batch in loader:
                clip = batch["clip"]
                if tuple(clip.shape[-2:]) != (size, size):
                    raise ValueError(f"clips such as {items[0].path} are {clip.shape[-2]}×{clip.shape[-1]} but the encoder "
                                     f"takes {size}×{size}: preprocess the faces to that size, or probe an encoder of theirs")
                with _autocast(device, dtype):
                    feats = encoder.forward_features(clip)
                out[batch["index"], view] = feats.float().cpu()
                bar.update(clip.shape[0])
    if world == 1:
        return out
    return env.gather_shares(out[list(env.share(len(items)))], len(items))


def extract_features(encoder: FMAE, items: Sequence[ClipItem], *, views: int = 1, stride: int = 2,
                     batch_size: int = 32, num_workers: int = 0, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32, cache_dir: str | os.PathLike | None = None,
                     progress: bool = False, desc: str = "features", env: Distributed | None = None) -> Features:
    """Pooled features of the frozen ``encoder`` (on ``device``) for labelled ``items``.

    Clips are ``encoder.config.num_frames`` frames ``stride`` apart: the centred one when
    ``views == 1``, else ``views`` clips at random starts seeded per (view, item). With
    ``cache_dir`` the result is read from, or written to, ``<cache_dir>/<key>.safetensors``
    (key: see the module docstring); a cache hit runs no encoder pass. With a
    multi-process ``env`` each rank encodes its :meth:`~fmae.distributed.Distributed.share`
    of the items and every rank returns all the features; rank 0 writes the cache.
    """
    items = [ClipItem(*it) for it in items]
    labels = item_labels(items)
    paths = [str(it.path) for it in items]
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{_cache_key(encoder, items, views, stride, dtype)}.safetensors"
        if cache.is_file():
            log.info("%s: %d items from the cache %s", desc, len(items), cache)
            return Features(load_file(str(cache))["features"], labels, paths)
    feats = _encode(encoder, items, views, stride, batch_size, num_workers, torch.device(device), dtype, progress, desc, env)
    if cache is not None and (env is None or env.main):
        write_atomically(cache, lambda tmp: save_file({"features": feats}, str(tmp), metadata={"paths": json.dumps(paths)}))
    return Features(feats, labels, paths)


# ---------------------------------------------------------------------------- training


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 ``[num_classes]``: ``N / (K · count_k)`` (scikit-learn's "balanced"),
    0 for a class absent from ``labels``."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), torch.zeros(()))


@contextlib.contextmanager
def _one_thread():
    # A linear layer on small batches is all synchronisation: with several threads on a
    # busy machine each step can wait ~100 ms for a descheduled worker (measured 40x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _loss(out: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if targets.is_floating_point():
        return F.mse_loss(out.squeeze(1), targets)
    return F.cross_entropy(out, targets, weight=weight)


def train_probe(features: torch.Tensor, targets: torch.Tensor, out_dim: int, *, norm: str = "batchnorm",
                epochs: int = 100, batch_size: int = 32, lr: float = 1e-4, weight_decay: float = 0.0,
                balance: str = "none", seed: int = 0, progress: bool = False) -> LinearProbe:
    """Train a :class:`LinearProbe` on frozen features with Adam, β = :data:`BETAS`.

    Args:
        features: float ``[N, D]``, one row per clip.
        targets: int64 ``[N]`` classes in ``[0, out_dim)`` → cross-entropy, or float
            ``[N]`` scores → MSE on one output (``out_dim`` 1).
        balance: classes only: ``"weights"`` weights the loss by :func:`class_weights`,
            ``"sampler"`` draws batches with class-balanced probabilities (with
            replacement), ``"none"`` shuffles.

    Returns the probe in eval mode, on the CPU. Deterministic for a given ``seed``.
    """
    if features.dim() != 2 or targets.shape != features.shape[:1]:
        raise ValueError(f"features must be [N, D] and targets [N], got {tuple(features.shape)} and {tuple(targets.shape)}")
    classify = not targets.is_floating_point()
    if not classify and out_dim != 1:
        raise ValueError(f"a regression probe has one output, got out_dim {out_dim}")
    if balance not in BALANCE or (balance != "none" and not classify):
        raise ValueError(f"balance must be one of {BALANCE} ('none' for regression), got {balance!r}")
    if classify and (targets.min() < 0 or targets.max() >= out_dim):
        raise ValueError(f"class targets must be in [0, {out_dim}), got {int(targets.min())}..{int(targets.max())}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the probe's initialisation
    probe = LinearProbe(features.shape[1], out_dim, norm)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, betas=BETAS, weight_decay=weight_decay)
    weight = class_weights(targets, out_dim) if balance == "weights" else None
    draw = class_weights(targets, out_dim)[targets] if balance == "sampler" else None
    n = features.shape[0]
    features = features.float()
    probe.train()
    with _one_thread():
        for _ in tqdm(range(epochs), disable=not progress, desc="probe", unit="epoch", dynamic_ncols=True):
            order = torch.randperm(n, generator=generator) if draw is None else torch.multinomial(draw, n, True, generator=generator)
            for idx in order.split(batch_size):
                if idx.numel() < 2 and norm == "batchnorm":
                    continue  # BatchNorm cannot normalise a batch of one
                loss = _loss(probe(features[idx]), targets[idx], weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return probe.eval()


def _oversampled(items: list[ClipItem]) -> list[ClipItem]:
    """Every class's items repeated (cyclically) up to the largest class's count."""
    by_class: dict[int, list[ClipItem]] = {}
    for it in items:
        by_class.setdefault(int(it.label), []).append(it)
    most = max(len(v) for v in by_class.values())
    return [group[i % len(group)] for _, group in sorted(by_class.items()) for i in range(most)]


def finetune(encoder: FMAE, probe: LinearProbe, items: Sequence[ClipItem], *, epochs: int, batch_size: int,
             lr: float, weight_decay: float = 0.0, balance: str = "none", stride: int = 2, seed: int = 0,
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, num_workers: int = 0,
             progress: bool = False, env: Distributed | None = None) -> None:
    """Train ``encoder`` and ``probe`` (both on ``device``) end to end, in place, on
    labelled ``items``: a seeded random clip per item and epoch, Adam with β =
    :data:`BETAS`. ``balance`` as in :func:`train_probe`, except that ``"sampler"``
    oversamples the smaller classes. With a multi-process ``env`` the two train as one
    DDP module, each rank on its shard of every epoch with ``batch_size // world``
    clips a batch. Leaves both in eval mode."""
    items = [ClipItem(*it) for it in items]
    labels = item_labels(items)
    classify = not labels.is_floating_point()
    device = torch.device(device)
    weight = class_weights(labels, probe.out_dim).to(device) if balance == "weights" else None
    if balance == "sampler":
        items = _oversampled(items)
    world, rank = (env.world, env.rank) if env is not None else (1, 0)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must split evenly over {world} processes")
    loader = make_loader(items=items, batch_size=batch_size // world, num_frames=encoder.config.num_frames,
                         stride=stride, random_start=True, shuffle=True, seed=seed, with_regions=False, device=device,
                         num_workers=num_workers, shard_id=rank, num_shards=world, drop_last=world > 1,
                         backend=_LOADER)
    # The decoder takes no part in forward_features: only the encoder and the probe learn
    # (and DDP must not wait for gradients of parameters that get none).
    for name, p in encoder.named_parameters():
        p.requires_grad_(name.startswith(ENCODER_PREFIXES))
    model: nn.Module = _Classifier(encoder, probe)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr, betas=BETAS, weight_decay=weight_decay)
    encoder.train()
    probe.train()
    with tqdm(total=epochs * len(loader), disable=not progress, desc="finetune", unit="batch", dynamic_ncols=True) as bar:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for batch in loader:
                if batch["clip"].shape[0] < 2 and probe.norm_kind == "batchnorm":
                    continue  # BatchNorm cannot normalise a batch of one
                target = batch["label"] if classify else batch["label"].float()
                with _autocast(device, dtype):
                    out = model(batch["clip"])
                loss = _loss(out.float(), target, weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1)
                if progress and bar.n % 10 == 0:  # reading the loss waits for the device
                    bar.set_postfix(loss=f"{loss.item():.4f}")
    for p in encoder.parameters():
        p.requires_grad_(True)
    encoder.eval()
    probe.eval()


class _Classifier(nn.Module):
    """``probe(encoder.forward_features(clip))``: one module, for DDP."""

    def __init__(self, encoder: FMAE, probe: LinearProbe) -> None:
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.probe(self.encoder.forward_features(clip).float())


@torch.no_grad()
def predict(probe: LinearProbe, features: torch.Tensor, kind: str) -> torch.Tensor:
    """Scores of items from their clips' features ``[I, K, D]``, averaged over the ``K``
    clips: class probabilities ``[I, C]`` (``kind`` ``"classification"``) or scores
    clamped to [0, 1], ``[I]`` (``"regression"``)."""
    probe.eval()
    device = next(probe.parameters()).device
    out = probe(features.flatten(0, 1).to(device).float()).unflatten(0, features.shape[:2])
    if kind == "classification":
        return out.softmax(-1).mean(1).cpu()
    return out.squeeze(-1).mean(1).clamp(0, 1).cpu()


def per_video(paths: Sequence[str], labels: torch.Tensor, scores: torch.Tensor) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Average the scores of items that share a video (EmotiW's windows), in first-seen
    order; ``ValueError`` if one video's items disagree on the label."""
    order: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        order.setdefault(p, []).append(i)
    videos, video_labels, video_scores = [], [], []
    for path, rows in order.items():
        if not bool((labels[rows] == labels[rows[0]]).all()):
            raise ValueError(f"the items of {path} have different labels")
        videos.append(path)
        video_labels.append(labels[rows[0]])
        video_scores.append(scores[rows].mean(0))
    return videos, torch.stack(video_labels), torch.stack(video_scores)


# ------------------------------------------------------------------------------- run


def build_encoder(config: ProbeConfig, device: torch.device | str = "cpu") -> tuple[FMAE, str]:
    """The encoder ``config`` asks for, in eval mode on ``device``, and where it came
    from (a path, or a ``"random init …"`` description)."""
    if config.checkpoint:
        encoder, _, path = load_model(config.checkpoint)  # for a run folder, path is the checkpoint read
        mc = encoder.config
        for name in ("img_size", "num_frames"):
            wanted = getattr(config, name)
            if wanted and wanted != getattr(mc, name):
                raise ValueError(f"{name} {wanted} asked for, but the encoder in {config.checkpoint} was built for "
                                 f"{getattr(mc, name)}; leave {name} at 0 to take the encoder's")
        source = str(path.resolve())
        if config.random_init:
            torch.manual_seed(config.seed)
            encoder, source = FMAE(mc).eval(), f"random init (architecture of {source})"
    else:
        torch.manual_seed(config.seed)
        mc = get_config(config.model, img_size=config.img_size or 112, num_frames=config.num_frames or 16)
        encoder, source = FMAE(mc).eval(), f"random init ({config.model})"
    return encoder.to(device), source


def data_root(config: ProbeConfig, img_size: int, progress: bool = True) -> Path:
    """``config.data_root``, or the synthetic engagement set at ``img_size`` through the
    face pipeline (:func:`fmae.trainer.data_root`) like a default pre-training run's
    clips, with :data:`SYNTHETIC_SUBJECTS` subjects: 40 test videos, where the
    pre-training set's 10 would let one video move the accuracy by 10 points."""
    return training_data_root(TrainConfig(img_size=img_size, data_root=config.data_root,
                                          num_workers=config.num_workers), progress,
                              SyntheticConfig(size=img_size, num_subjects=SYNTHETIC_SUBJECTS))


def task_items(config: ProbeConfig, root: Path) -> tuple[list[ClipItem], list[ClipItem], list[str]]:
    """``(train items, eval items, class names)`` of ``config.task`` under ``root``; class
    names are empty for a regression."""
    task = TASKS[config.task]
    options: dict[str, Any] = {}
    names = list(task.class_names or [])
    if task.dataset == "daisee":
        options["column"] = config.label_column
    elif task.dataset == "fer":
        names = fer_classes(root, config.train_split)
        options["classes"] = names  # the training split's indices everywhere
    train, evaluated = (list_items(task.dataset, root, split, **options) for split in (config.train_split, config.eval_split))
    for split, items in ((config.train_split, train), (config.eval_split, evaluated)):
        labels = item_labels(items)
        if task.kind == "classification" and labels.is_floating_point():
            raise ValueError(f"{root} {split}: the labels are scores, but task {config.task} needs classes")
        if task.kind == "classification" and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{root} {split}: label {int(labels.max())} is outside the {len(names)} classes {names}")
    return train, evaluated, names


def _write_predictions(path: Path, videos: list[str], labels: torch.Tensor, scores: torch.Tensor,
                       class_names: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if class_names:
            w.writerow(["video", "label", "prediction", "confidence", *[f"p_{n}" for n in class_names]])
            for video, y, probs in zip(videos, labels.tolist(), scores.tolist()):
                best = max(range(len(probs)), key=probs.__getitem__)
                w.writerow([video, y, best, f"{probs[best]:.4f}", *[f"{q:.4f}" for q in probs]])
        else:
            w.writerow(["video", "label", "score"])
            w.writerows([video, f"{y:.4f}", f"{s:.4f}"] for video, y, s in zip(videos, labels.tolist(), scores.tolist()))


def run_probe(config: ProbeConfig, progress: bool = True) -> dict[str, Any]:
    """Probe (or with ``config.finetune`` fine-tune) an encoder; report on ``config.eval_split``.

    Writes into ``config.out_dir``: ``config.yaml``; ``probe.safetensors`` + ``probe.json``
    (:func:`load_probe`); with ``finetune`` also ``encoder.safetensors`` + ``encoder.json``
    (:func:`fmae.weights.load_model`); ``metrics.json`` + ``metrics.md``;
    ``confusion.png`` (classification); ``predictions.csv`` (one row per evaluated
    video); the feature cache in ``config.cache_dir`` (default ``<out_dir>/features``).

    Returns the report that ``metrics.json`` holds: the :mod:`fmae.metrics` numbers,
    the run's facts and the trivial baseline (``majority_accuracy``, or
    ``mean_baseline_mse`` for regression). Under ``torchrun`` every rank returns it and
    rank 0 writes the files.
    """
    env = Distributed(config.device)
    try:
        return _run_probe(config, progress, env)
    finally:
        env.close()


def _run_probe(config: ProbeConfig, progress: bool, env: Distributed) -> dict[str, Any]:
    out = Path(config.out_dir).expanduser()
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(config))
    task = TASKS[config.task]
    device = env.device
    dtype = resolve_dtype(config.dtype, device)
    encoder, source = build_encoder(config, device)
    mc = encoder.config
    if env.main:  # one process prepares the default data; the others then find it done
        root = data_root(config, mc.img_size, progress)
    env.barrier()
    if not env.main:
        root = data_root(config, mc.img_size, progress=False)
    # Items and labels first: a wrong label file fails here, before any encoder pass.
    train_items, eval_items, class_names = task_items(config, root)
    out_dim = len(class_names) or 1
    common = dict(stride=config.temporal_stride, batch_size=config.batch_size, num_workers=config.num_workers,
                  device=device, dtype=dtype, progress=progress and env.main, env=env)
    cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else out / "features"

    if config.finetune:
        torch.manual_seed(config.seed)
        probe = LinearProbe(mc.embed_dim, out_dim, config.head_norm).to(device)
        finetune(encoder, probe, train_items, epochs=config.finetune_epochs, lr=config.lr,
                 weight_decay=config.weight_decay, balance=config.balance, seed=config.seed, **common)
        env.check_in_sync(encoder)
        if env.main:
            save_encoder(encoder, out / "encoder.safetensors")
        evaluated = extract_features(encoder, eval_items, views=config.test_views, desc=f"features {config.eval_split}", **common)
    else:
        train = extract_features(encoder, train_items, views=config.train_views, cache_dir=cache_dir,
                                 desc=f"features {config.train_split}", **common)
        evaluated = extract_features(encoder, eval_items, views=config.test_views, cache_dir=cache_dir,
                                     desc=f"features {config.eval_split}", **common)
        views = train.features.shape[1]
        probe = train_probe(train.features.flatten(0, 1), train.labels.repeat_interleave(views), out_dim,
                            norm=config.head_norm, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                            weight_decay=config.weight_decay, balance=config.balance, seed=config.seed,
                            progress=progress and env.main)
    videos, labels, scores = per_video(evaluated.paths, evaluated.labels, predict(probe, evaluated.features, task.kind))
    train_labels = item_labels(train_items)

    report: dict[str, Any] = {
        "task": config.task, "mode": "finetune" if config.finetune else "linear probe", "split": config.eval_split,
        "encoder": source, "encoder_fingerprint": fingerprint(encoder), "data_root": str(root),
        "train_items": len(train_items), "eval_items": len(eval_items), "eval_videos": len(videos),
    }
    if task.kind == "classification":
        report.update(classification_metrics(labels, scores.argmax(1), out_dim, class_names))
        majority = int(torch.bincount(train_labels, minlength=out_dim).argmax())
        report["majority_class"] = majority
        report["majority_accuracy"] = float((labels == majority).float().mean())
    else:
        report.update(regression_metrics(labels, scores))
        report["mean_baseline_mse"] = float(((labels - train_labels.mean()) ** 2).mean())
    meta = {"task": config.task, "kind": task.kind, "class_names": class_names, "img_size": mc.img_size,
            "num_frames": mc.num_frames, "temporal_stride": config.temporal_stride, "test_views": config.test_views,
            "encoder": source, "encoder_fingerprint": report["encoder_fingerprint"]}
    if env.main:
        if task.kind == "classification":
            save_confusion_png(report["confusion_matrix"], class_names, out / "confusion.png",
                               f"{config.task}, {config.eval_split}: accuracy {report['accuracy']:.3f}")
        save_probe(probe.cpu(), out / "probe.safetensors", meta)
        _write_predictions(out / "predictions.csv", videos, labels, scores, class_names)
        write_report(report, out, "metrics", f"FMAE {report['mode']}: {config.task}, {config.eval_split} split")
    return report
