"""Controls: the evidence's probe (:mod:`fmae.experiments.logistic_probe`) on features that are
not an encoder's (:data:`CONTROLS`: colour, static and motion statistics of the same clips the
encoders see), and on nothing at all (the training set's majority class). They bound what an
encoder's accuracy means: a task whose label static statistics read is no test of pre-training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from fmae.data import ClipItem
from fmae.experiments.cells import run_cell
from fmae.experiments.logistic_probe import probe_accuracy
from fmae.experiments.tasks import EvidenceTask, labels_of, view_loader
from fmae.face import FaceRegion

if TYPE_CHECKING:
    from fmae.experiments.evidence import EvidenceConfig

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


def clip_statistics(items: Sequence[ClipItem], views: int, config: EvidenceConfig) -> dict[str, np.ndarray]:
    """Per item and clip, the :data:`CONTROLS` features (``float32 [I, views, F]``) of the
    clips the encoders see (the same starts as :func:`fmae.downstream.features.extract_features`)."""
    loader = view_loader(items, views, config, with_regions=True)
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


def run_controls(task: EvidenceTask, config: EvidenceConfig, folder: Path) -> dict[str, Any]:
    """The probe on :data:`CONTROLS` and the majority class; cached in ``folder``
    (:func:`fmae.experiments.cells.run_cell`)."""
    return run_cell(folder, lambda _: _control_accuracies(task, config))


def _control_accuracies(task: EvidenceTask, config: EvidenceConfig) -> dict[str, Any]:
    tick = time.perf_counter()
    train, test = clip_statistics(task.train, task.views, config), clip_statistics(task.test, task.views, config)
    train_y, test_y = labels_of(task.train), labels_of(task.test)
    result: dict[str, Any] = {}
    for key in CONTROLS:
        result[key] = probe_accuracy(train[key], train_y, task.train_groups, test[key], test_y)
    majority = int(np.bincount(train_y).argmax())
    correct = (test_y == majority).astype(int)
    result["majority"] = {"accuracy": float(correct.mean()), "correct": correct.tolist(), "class": majority}
    result["seconds"] = time.perf_counter() - tick
    return result
