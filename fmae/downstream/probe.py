"""Linear probing (paper Algorithm 2, lines 9–14) and full fine-tuning of an FMAE encoder.

The pipeline that :func:`run_probe` drives (and ``python -m fmae.probe`` exposes):

1. **Encoder**: a pre-training checkpoint or an exported encoder
   (:func:`fmae.weights.load_model`), or with ``random_init`` the same architecture
   freshly initialised — the baseline that shows what pre-training adds.
2. **Features** (:func:`extract_features`): the frozen encoder sees every token of a
   clip (no masking); its final-normed tokens are pooled to one vector
   (:data:`fmae.downstream.features.POOLS`): by default ``mean_std``, the tokens' mean
   (the ``D`` vector of :meth:`fmae.model.FMAE.forward_features`; FMAE has no [CLS]
   token) and beside it their standard deviation over time (how much each position
   changes during the clip: blinks, glances, head turns, which a mean over time
   erases); ``mean`` is the mean alone (VideoMAE's probe). Each item
   (a video, or a window of a long EmotiW video) gives ``views`` clips: the centred
   one, or several at seeded random starts. Features are cached on disk, keyed by the
   encoder's weights (:func:`fmae.weights.fingerprint`), the items (paths, windows,
   file sizes and times), the clip sampling and the pooling, so probes with other
   seeds, heads, optimiser settings or label columns reuse one encoder pass.
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
   :mod:`fmae.downstream.metrics` reports per video, beside the trivial baseline (the training
   set's majority class, or its mean score) and, by default (``random_baseline``), the
   same probe on a randomly initialised encoder of the same architecture (seeded by
   ``seed``: with the pre-training run's seed, the very weights it started from), whose
   features are cached like the others: what the probe reads without pre-training.

With ``finetune`` the encoder is trained too (end to end on fresh random clips each
epoch, minority classes oversampled when ``balance="sampler"``, the tokens mean-pooled),
and the fine-tuned encoder is exported beside the probe; no random-init row is computed
(it would be a second fine-tuning).

Under ``torchrun`` (:class:`fmae.runtime.distributed.Distributed`) the ranks share the encoder
passes: each encodes every ``world``-th item and the features are gathered, so every
rank holds the same features and trains the same probe; fine-tuning is data-parallel
(DDP, ``batch_size`` the global batch). Rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmae.data import ClipItem, fer_classes, list_items, prepared_root, probing_set
from fmae.downstream.features import POOLS, Features, extract_features, item_labels
from fmae.downstream.finetune import finetune
from fmae.downstream.fit import BALANCE, default_epochs, train_probe
from fmae.downstream.head import HEAD_NORMS, LinearProbe, save_probe
from fmae.downstream.intervals import paired_bootstrap
from fmae.downstream.metrics import (
    PAIRED,
    classification_metrics,
    regression_metrics,
    save_confusion_png,
    write_predictions,
    write_report,
)
from fmae.downstream.scores import per_video, score_items
from fmae.model import FMAE, MODEL_CONFIGS, FMAEConfig, get_config
from fmae.runtime.config import check_choices, setting, to_yaml
from fmae.runtime.device import DTYPES, resolve_dtype
from fmae.runtime.distributed import Distributed
from fmae.runtime.files import write_atomically
from fmae.runtime.lock import folder_lock
from fmae.weights import fingerprint, load_model, save_encoder
from fmae.weights.checkpoint import training_settings

log = logging.getLogger(__name__)


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

    checkpoint: str = setting(
        "",
        "pre-training checkpoint (python -m fmae.train), its run folder (the newest valid "
        "checkpoint) or an exported encoder (.safetensors with its .json); may be empty with "
        "--random-init",
    )
    random_init: bool = setting(
        False,
        "probe a freshly initialised encoder instead (the baseline): the checkpoint's "
        "architecture if one is given, else --model/--img-size/--num-frames",
    )
    model: str = setting("fmae_vit_tiny", "encoder size for --random-init without a checkpoint", tuple(MODEL_CONFIGS))
    img_size: int = setting(0, "clip side in pixels; 0: the checkpoint's (112 for a random init)")
    num_frames: int = setting(0, "frames per clip; 0: the checkpoint's (16 for a random init)")
    temporal_stride: int = setting(2, "take every k-th frame of the video")
    task: str = setting(
        "daisee",
        "daisee: 4 engagement levels, DAiSEE layout (cross-entropy); emotiw: engagement score "
        "in [0, 1], EmotiW layout (MSE); fer: expression classes, a folder per class (cross-entropy)",
        tuple(TASKS),
    )
    label_column: str = setting("Engagement", "DAiSEE label column (Boredom, Engagement, Confusion, Frustration)")
    data_root: str = setting(
        "",
        "data set folder of face clips; empty: the built-in synthetic engagement set "
        "(40 subjects, DAiSEE layout), preprocessed as for pre-training",
    )
    train_split: str = setting("Train", "split the probe is trained on")
    eval_split: str = setting("Test", "split the metrics are reported on")
    train_views: int = setting(1, "clips per training item (1: centred; more: seeded random starts)")
    test_views: int = setting(1, "clips per evaluated item, predictions averaged (1: centred)")
    pool: str = setting(
        "mean_std",
        "how a clip's tokens become one feature vector: mean_std (their mean and, beside "
        "it, their standard deviation over time: what moves in the clip) or mean (the mean alone, "
        "VideoMAE's probe); fine-tuning always pools by the mean",
        POOLS,
    )
    head_norm: str = setting(
        "batchnorm",
        "normalisation before the linear layer: batchnorm (MAE's linear probe), layernorm (VideoMAE's fc_norm) or none",
        HEAD_NORMS,
    )
    balance: str = setting("none", "class imbalance: class-weighted loss, class-balanced sampling, or none", BALANCE)
    epochs: int = setting(
        0,
        "probe training epochs over the cached features; 0: 100, or more where that is under "
        "4000 Adam steps (1000 on the default set's 120 clips)",
    )
    batch_size: int = setting(32, "clips per batch, for feature extraction and training")
    lr: float = setting(1e-4, "Adam learning rate (the paper's 1e-4)")
    weight_decay: float = setting(0.0, "Adam weight decay (the paper's 0)")
    finetune: bool = setting(False, "train the whole encoder with the head instead of a frozen-feature probe")
    finetune_epochs: int = setting(10, "epochs of full fine-tuning (with --finetune)")
    dtype: str = setting(
        "auto", "compute dtype of the encoder: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES
    )
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    num_workers: int = setting(2, "data-loading worker processes")
    cache_dir: str = setting("", "feature cache folder (share it between runs); empty: <out-dir>/features")
    out_dir: str = setting("runs/probe", "where probe weights, metrics and plots go")
    seed: int = setting(0, "seed of the probe's initialisation and data order (and of a random-init encoder)")
    random_baseline: bool = setting(
        True,
        "also probe a randomly initialised encoder of the checkpoint's architecture the same way, "
        "reported beside as random_init: the very weights its pre-training started from (seeded by "
        "the run's seed; --seed for other weights); linear probe only; its features are cached too",
    )

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("temporal_stride", "train_views", "test_views", "batch_size", "finetune_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.img_size, self.num_frames, self.num_workers, self.epochs) < 0:
            raise ValueError("img_size, num_frames, num_workers and epochs must be >= 0")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not self.checkpoint and not self.random_init:
            raise ValueError("give a checkpoint to probe, or random_init for the randomly initialised baseline")
        if TASKS[self.task].kind == "regression" and self.balance != "none":
            raise ValueError(f"balance {self.balance!r} is for classes; the {self.task} task is a regression")


def build_encoder(config: ProbeConfig, device: torch.device | str = "cpu") -> tuple[FMAE, str]:
    """The encoder ``config`` asks for, in eval mode on ``device``, and where it came
    from (a path, or a ``"random init …"`` description)."""
    if config.checkpoint:
        encoder, _, path = load_model(config.checkpoint)  # for a run folder, path is the checkpoint read
        mc = encoder.config
        for name in ("img_size", "num_frames"):
            wanted = getattr(config, name)
            if wanted and wanted != getattr(mc, name):
                raise ValueError(
                    f"{name} {wanted} asked for, but the encoder in {config.checkpoint} was built for "
                    f"{getattr(mc, name)}; leave {name} at 0 to take the encoder's"
                )
        source = str(path.resolve())
        if config.random_init:
            encoder, source = random_encoder(mc, config.seed), f"random init (architecture of {source})"
    else:
        mc = get_config(config.model, img_size=config.img_size or 112, num_frames=config.num_frames or 16)
        encoder, source = random_encoder(mc, config.seed), f"random init ({config.model})"
    return encoder.to(device), source


def random_encoder(mc: FMAEConfig, seed: int) -> FMAE:
    """A freshly initialised FMAE of architecture ``mc``, in eval mode, seeded by ``seed``.

    A pre-training run seeds torch with its ``seed`` and builds its model first, so with
    the run's seed this is the very encoder the run started from.
    """
    torch.manual_seed(seed)
    return FMAE(mc).eval()


def data_root(config: ProbeConfig, img_size: int, progress: bool = True) -> Path:
    """``config.data_root``, or the built-in engagement set
    (:func:`fmae.data.probing_set`, 40 test videos) at ``img_size`` through the face
    pipeline (:func:`fmae.data.prepared_root`), like a default pre-training run's clips."""
    return prepared_root(
        config.data_root, img_size, workers=config.num_workers, progress=progress, synthetic=probing_set(img_size)
    )


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
    train, evaluated = (
        list_items(task.dataset, root, split, **options) for split in (config.train_split, config.eval_split)
    )
    for split, items in ((config.train_split, train), (config.eval_split, evaluated)):
        labels = item_labels(items)
        if task.kind == "classification" and labels.is_floating_point():
            raise ValueError(f"{root} {split}: the labels are scores, but task {config.task} needs classes")
        if task.kind == "classification" and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{root} {split}: label {int(labels.max())} is outside the {len(names)} classes {names}")
    return train, evaluated, names


def linear_probe(
    encoder: FMAE,
    train_items: list[ClipItem],
    eval_items: list[ClipItem],
    config: ProbeConfig,
    out_dim: int,
    cache_dir: Path,
    common: dict[str, Any],
    progress: bool,
    desc: str = "",
) -> tuple[LinearProbe, Features]:
    """Train ``config``'s linear probe on ``encoder``'s frozen features of ``train_items``
    (read from or written to the cache in ``cache_dir``); returns it with the features of
    ``eval_items``. ``common``: :func:`extract_features`'s sampling and device arguments."""
    common = {**common, "progress": progress}
    train = extract_features(
        encoder,
        train_items,
        views=config.train_views,
        cache_dir=cache_dir,
        pool=config.pool,
        desc=f"{desc}features {config.train_split}",
        **common,
    )
    evaluated = extract_features(
        encoder,
        eval_items,
        views=config.test_views,
        cache_dir=cache_dir,
        pool=config.pool,
        desc=f"{desc}features {config.eval_split}",
        **common,
    )
    views = train.features.shape[1]
    rows = train.features.shape[0] * views
    epochs = config.epochs or default_epochs(rows, config.batch_size)
    log.info("%sprobe: %d epochs over %d training rows, batch %d", desc, epochs, rows, config.batch_size)
    probe = train_probe(
        train.features.flatten(0, 1),
        train.labels.repeat_interleave(views),
        out_dim,
        norm=config.head_norm,
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        balance=config.balance,
        seed=config.seed,
        progress=progress,
    )
    return probe, evaluated


def _metrics(
    task: Task, labels: torch.Tensor, scores: torch.Tensor, out_dim: int, class_names: list[str]
) -> dict[str, Any]:
    if task.kind == "classification":
        return classification_metrics(labels, scores.argmax(1), out_dim, class_names)
    return regression_metrics(labels, scores)


def run_probe(config: ProbeConfig, progress: bool = True) -> dict[str, Any]:
    """Probe (or with ``config.finetune`` fine-tune) an encoder; report on ``config.eval_split``.

    Writes into ``config.out_dir``: ``config.yaml``; ``probe.safetensors`` + ``probe.json``
    (:func:`load_probe`); with ``finetune`` also ``encoder.safetensors`` + ``encoder.json``
    (:func:`fmae.weights.load_model`); ``metrics.json`` + ``metrics.md``;
    ``confusion.png`` (classification); ``predictions.csv`` (one row per evaluated
    video); the feature cache in ``config.cache_dir`` (default ``<out_dir>/features``).

    Returns the report that ``metrics.json`` holds: the :mod:`fmae.downstream.metrics` numbers,
    the run's facts, the trivial baseline (``majority_accuracy``, or
    ``mean_baseline_mse`` for regression) and, with ``random_baseline`` (a linear probe
    of a checkpoint), ``random_init``: the same metrics of the same probe on a randomly
    initialised encoder of the same architecture, with that encoder's description and
    fingerprint, and :data:`fmae.downstream.metrics.PAIRED`: whether the difference between
    the two could be chance. Under ``torchrun`` every rank returns it and rank 0 writes the
    files, holding ``out_dir``'s lock (:func:`fmae.runtime.lock.folder_lock`): a second run into it
    raises ``FolderInUseError``. A ``cache_dir`` of its own is not locked: probes may share
    it, and each entry is written atomically, the same bytes whoever writes it.
    """
    env = Distributed(config.device)
    try:
        with folder_lock(Path(config.out_dir).expanduser()) if env.main else contextlib.nullcontext():
            return _run_probe(config, progress, env)
    finally:
        env.close()


def _run_probe(config: ProbeConfig, progress: bool, env: Distributed) -> dict[str, Any]:
    out = _write_config(config, env)
    run = _set_up(config, progress, env, out)
    probe, evaluated, pool = _train(run)
    videos, labels, scores = _video_scores(probe, evaluated, run.task)
    report = _report(run, pool, labels, scores, len(videos))
    if config.random_baseline and not config.random_init and not config.finetune:
        report["random_init"], report[PAIRED] = _random_init_row(run, videos, labels, scores)
    _write_outputs(run, probe, report, pool, videos, labels, scores)
    return report


@dataclass
class _ProbeRun:
    """What the stages of one probe run share: settings, encoder, data, items and feature arguments."""

    config: ProbeConfig
    env: Distributed
    out: Path
    task: Task
    encoder: FMAE
    mc: FMAEConfig
    source: str
    root: Path
    train_items: list[ClipItem]
    eval_items: list[ClipItem]
    class_names: list[str]
    out_dim: int
    common: dict[str, Any]
    cache_dir: Path
    show_progress: bool


def _write_config(config: ProbeConfig, env: Distributed) -> Path:
    """Resolve the output folder and, on rank 0, create it and write ``config.yaml`` there."""
    out = Path(config.out_dir).expanduser()
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / "config.yaml", lambda tmp: tmp.write_text(to_yaml(config)))
    return out


def _set_up(config: ProbeConfig, progress: bool, env: Distributed, out: Path) -> _ProbeRun:
    """Build the encoder, find the data, list and check the items, and fix the feature arguments."""
    task = TASKS[config.task]
    device = env.device
    dtype = resolve_dtype(config.dtype, device)
    encoder, source = build_encoder(config, device)
    mc = encoder.config
    root = _shared_data_root(config, mc.img_size, progress, env)
    # Items and labels first: a wrong label file fails here, before any encoder pass.
    train_items, eval_items, class_names = task_items(config, root)
    common = dict(
        stride=config.temporal_stride,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        device=device,
        dtype=dtype,
        progress=progress and env.main,
        env=env,
    )
    return _ProbeRun(
        config=config,
        env=env,
        out=out,
        task=task,
        encoder=encoder,
        mc=mc,
        source=source,
        root=root,
        train_items=train_items,
        eval_items=eval_items,
        class_names=class_names,
        out_dim=len(class_names) or 1,
        common=common,
        cache_dir=Path(config.cache_dir).expanduser() if config.cache_dir else out / "features",
        show_progress=progress and env.main,
    )


def _shared_data_root(config: ProbeConfig, img_size: int, progress: bool, env: Distributed) -> Path:
    """The data root, prepared by rank 0 first so the other ranks find it done."""
    if env.main:  # one process prepares the default data; the others then find it done
        root = data_root(config, img_size, progress)
    env.barrier()
    if not env.main:
        root = data_root(config, img_size, progress=False)
    return root


def _train(run: _ProbeRun) -> tuple[LinearProbe, Features, str]:
    """Fine-tune, or train a linear probe on frozen features; returns the probe, eval features and pooling."""
    if run.config.finetune:
        return _finetune_encoder(run)
    probe, evaluated = linear_probe(
        run.encoder,
        run.train_items,
        run.eval_items,
        run.config,
        run.out_dim,
        run.cache_dir,
        run.common,
        run.show_progress,
    )
    return probe, evaluated, run.config.pool


def _finetune_encoder(run: _ProbeRun) -> tuple[LinearProbe, Features, str]:
    """Train encoder and probe end to end, export the encoder (rank 0), extract the eval features."""
    config, env = run.config, run.env
    pool = "mean"  # what fmae.downstream.finetune trains through
    torch.manual_seed(config.seed)
    probe = LinearProbe(run.mc.embed_dim, run.out_dim, config.head_norm).to(env.device)
    finetune(
        run.encoder,
        probe,
        run.train_items,
        epochs=config.finetune_epochs,
        lr=config.lr,
        weight_decay=config.weight_decay,
        balance=config.balance,
        seed=config.seed,
        **run.common,
    )
    env.check_in_sync(run.encoder)
    if env.main:
        save_encoder(run.encoder, run.out / "encoder.safetensors")
    evaluated = extract_features(
        run.encoder, run.eval_items, views=config.test_views, desc=f"features {config.eval_split}", **run.common
    )
    return probe, evaluated, pool


def _video_scores(probe: LinearProbe, evaluated: Features, task: Task) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Score every evaluated clip with ``probe`` and average per video: ``(videos, labels, scores)``."""
    return per_video(evaluated.paths, evaluated.labels, score_items(probe, evaluated.features, task.kind))


def _report(run: _ProbeRun, pool: str, labels: torch.Tensor, scores: torch.Tensor, videos: int) -> dict[str, Any]:
    """The run's facts, its metrics and the trivial baseline (majority class, or mean score)."""
    config, task = run.config, run.task
    train_labels = item_labels(run.train_items)
    report: dict[str, Any] = {
        "task": config.task,
        "mode": "finetune" if config.finetune else "linear probe",
        "split": config.eval_split,
        "encoder": run.source,
        "encoder_fingerprint": fingerprint(run.encoder),
        "data_root": str(run.root),
        "train_items": len(run.train_items),
        "eval_items": len(run.eval_items),
        "eval_videos": videos,
        "pool": pool,
    }
    report.update(_metrics(task, labels, scores, run.out_dim, run.class_names))
    if task.kind == "classification":
        majority = int(torch.bincount(train_labels, minlength=run.out_dim).argmax())
        report["majority_class"] = majority
        report["majority_accuracy"] = float((labels == majority).float().mean())
    else:
        report["mean_baseline_mse"] = float(((labels - train_labels.mean()) ** 2).mean())
    return report


def _start_seed(run: _ProbeRun) -> int:
    """The seed of the random init that pre-training started from: the run's stored seed for a
    pre-training checkpoint (:func:`random_encoder` then rebuilds its first weights), else ``--seed``."""
    stored = training_settings(run.source).get("seed") if run.config.checkpoint else None
    return int(stored) if stored is not None else run.config.seed


def _per_video_merit(task: Task, labels: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """float64 ``[V]``, higher is better: 1/0 right or wrong, or minus the squared error."""
    if task.kind == "classification":
        return (scores.argmax(1) == labels).double()
    return -(scores.reshape(-1).double() - labels.double()).square()


def _random_init_row(
    run: _ProbeRun, videos: list[str], labels: torch.Tensor, scores: torch.Tensor
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same probe on the same clips from a seeded random-init encoder: its description and
    metrics, and the paired comparison with the pre-trained encoder's ``labels``/``scores`` of
    ``videos`` (:data:`PAIRED`)."""
    config = run.config
    seed = _start_seed(run)
    baseline = random_encoder(run.mc, seed).to(run.env.device)
    base_probe, base_eval = linear_probe(
        baseline,
        run.train_items,
        run.eval_items,
        config,
        run.out_dim,
        run.cache_dir,
        run.common,
        run.show_progress,
        desc="random init ",
    )
    base_videos, base_labels, base_scores = _video_scores(base_probe, base_eval, run.task)
    if base_videos != videos:
        raise RuntimeError("the random-init probe was evaluated on other videos than the pre-trained one")
    mine, theirs = _per_video_merit(run.task, labels, scores), _per_video_merit(run.task, base_labels, base_scores)
    row = {
        "encoder": f"random init, seed {seed} (architecture of {run.source})",
        "encoder_fingerprint": fingerprint(baseline),
        **_metrics(run.task, base_labels, base_scores, run.out_dim, run.class_names),
    }
    return row, paired_bootstrap(mine.numpy(), theirs.numpy(), videos, seed=config.seed)


def _write_outputs(
    run: _ProbeRun,
    probe: LinearProbe,
    report: dict[str, Any],
    pool: str,
    videos: list[str],
    labels: torch.Tensor,
    scores: torch.Tensor,
) -> None:
    """On rank 0, write the confusion plot, the probe with its meta, the predictions and the report."""
    config, task, out = run.config, run.task, run.out
    meta = {
        "task": config.task,
        "kind": task.kind,
        "class_names": run.class_names,
        "img_size": run.mc.img_size,
        "num_frames": run.mc.num_frames,
        "temporal_stride": config.temporal_stride,
        "test_views": config.test_views,
        "pool": pool,
        "encoder": run.source,
        "encoder_fingerprint": report["encoder_fingerprint"],
    }
    if run.env.main:
        if task.kind == "classification":
            save_confusion_png(
                report["confusion_matrix"],
                run.class_names,
                out / "confusion.png",
                f"{config.task}, {config.eval_split}: accuracy {report['accuracy']:.3f}",
            )
        save_probe(probe.cpu(), out / "probe.safetensors", meta)
        write_predictions(out / "predictions.csv", videos, labels, scores, run.class_names)
        write_report(report, out, "metrics", f"FMAE {report['mode']}: {config.task}, {config.eval_split} split")
