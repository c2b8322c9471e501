"""One cell of an experiment: pre-train (or not), measure, keep the result; skip it when done.

Both the ablation sweeps (:mod:`fmae.experiments.sweeps`) and the evidence run
(:mod:`fmae.experiments.evidence`) are made of cells. A cell works in its own folder, named
by what shapes its result, and ends by writing its result file there (``result.json``
unless told otherwise). :func:`run_cell` reads that file instead of running a finished
cell again; a cell killed after pre-training resumes from its last checkpoint, trains no
more, and measures again. What the cell measures (a probe, controls, a reference) is the
caller's ``measure``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fmae.pretraining.train import TrainConfig, pretrain
from fmae.runtime.files import write_json
from fmae.weights.checkpoint import latest_checkpoint

log = logging.getLogger(__name__)

RESULT = "result.json"


@dataclass(frozen=True)
class Pretrained:
    """What a cell's pre-training left: its last ``checkpoint``, whether it ``resumed`` a
    half-trained run, the ``seconds`` it took now, and the run's ``log`` (``metrics.jsonl``'s
    records, oldest first)."""

    checkpoint: Path
    resumed: bool
    seconds: float
    log: list[dict[str, Any]]


def read_log(metrics_jsonl: Path) -> list[dict[str, Any]]:
    """The records of a pre-training run's ``metrics.jsonl`` (none when it is missing)."""
    if not metrics_jsonl.exists():
        return []
    return [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]


def pretrain_cell(train: TrainConfig, progress: bool = True) -> Pretrained:
    """:func:`fmae.pretraining.train.pretrain` with ``train``, resumed from the last checkpoint
    in its ``out_dir`` when there is one."""
    out = Path(train.out_dir)
    resumed = latest_checkpoint(out / "checkpoints") is not None
    tick = time.perf_counter()
    checkpoint = pretrain(train, resume=resumed, progress=progress)
    return Pretrained(Path(checkpoint), resumed, time.perf_counter() - tick, read_log(out / "metrics.jsonl"))


def run_cell(
    folder: Path,
    measure: Callable[[Pretrained | None], dict[str, Any]],
    train: TrainConfig | None = None,
    result: str = RESULT,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one cell in ``folder``, or read ``folder/result`` when it is done.

    With ``train``, the cell first pre-trains (:func:`pretrain_cell`); ``measure`` gets what
    that left (``None`` without ``train``) and returns the cell's result, written to
    ``folder/result`` atomically and returned.
    """
    done = folder / result
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    log.info("cell %s", folder.name)
    pretrained = None if train is None else pretrain_cell(train, progress)
    outcome = measure(pretrained)
    write_json(done, outcome)
    return outcome
