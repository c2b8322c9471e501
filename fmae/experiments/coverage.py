"""What each masking strategy hides of a task's pre-training clips: the share of the tokens
labelled eye/nose/mouth, skin, and hair or background (the evidence report's mask coverage)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from fmae.data import make_loader
from fmae.experiments.tasks import EvidenceTask
from fmae.face import FaceRegion
from fmae.masking import make_mask, token_grid
from fmae.ops import region_histogram, token_labels

if TYPE_CHECKING:
    from fmae.experiments.evidence import EvidenceConfig


def mask_coverage(task: EvidenceTask, config: EvidenceConfig, clips: int = 16) -> dict[str, dict[str, float]]:
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
