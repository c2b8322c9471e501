"""The naive predictors a model has to beat (:data:`BASELINES`): each predicts every masked
cube of a clip from its visible cubes only (:func:`baseline_predictions`).

- ``visible_mean``: every masked cube is the mean of the clip's visible cubes;
- ``nearest_visible``: the visible cube nearest in space-time, by Euclidean distance on
  the token grid ``(t', h, w)``, the lowest token index among equally near ones
  (:func:`fmae.model.hint.nearest_visible_index`);
- ``temporal_interp``: linear interpolation in time between the nearest visible cubes at
  the same spatial position before and after (weighted by the distance in ``t'``); with
  only one of them, that one; with neither, ``nearest_visible``
  (:func:`fmae.model.hint.temporal_interp`, which a model may be given as its decoder's hint).

A model that beats them has learnt more about faces than copying or averaging what it
was shown.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fmae.model.hint import nearest_visible_index, temporal_interp

BASELINES: tuple[str, ...] = ("visible_mean", "nearest_visible", "temporal_interp")
"""The naive predictors measured beside the model (see the module docstring)."""


def baseline_predictions(targets: torch.Tensor, mask: torch.Tensor, grid: Sequence[int]) -> dict[str, torch.Tensor]:
    """Every baseline's prediction of every cube, from the visible cubes only.

    Args:
        targets: float ``[B, N, P]``, every token's cube in the space of the training
            targets (see :func:`target_cubes`).
        mask: bool ``[B, N]``, True = masked; every row keeps at least one token visible.
        grid: the token grid ``(T', Hp, Wp)``, ``N = T'·Hp·Wp``, tokens in VideoMAE order.

    Returns:
        ``{name: float [B, N, P]}`` for each of :data:`BASELINES`; the predictions mean
        something at masked positions (a visible cube predicts itself).
    """
    B, N, P = targets.shape
    t, h, w = (int(g) for g in grid)
    if mask.shape != (B, N) or t * h * w != N:
        raise ValueError(f"targets {tuple(targets.shape)}, mask {tuple(mask.shape)} and grid {tuple(grid)} disagree")
    visible = ~mask
    if not bool(visible.any(dim=1).all()):
        raise ValueError("a clip has no visible token: nothing to predict the masked cubes from")
    targets = targets.float()
    weights = visible.unsqueeze(-1).float()
    mean = (targets * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
    nearest = targets.gather(1, nearest_visible_index(mask, grid).unsqueeze(-1).expand(B, N, P))
    interp, found = temporal_interp(targets, visible, (t, h, w))
    return {
        "visible_mean": mean.expand(B, N, P),
        "nearest_visible": nearest,
        "temporal_interp": torch.where(found.unsqueeze(-1), interp, nearest),
    }
