"""What the decoder is told about a hidden cube before it predicts it: the cubes seen at the
same spatial position at other times (``FMAEConfig.decoder_hint``).

A face video's background and hair barely move, so a hidden cube is often close to the cube
seen at its place a moment before or after. Interpolating between them in time is the
strongest naive predictor of those regions (:mod:`fmae.evaluation.baselines`); with
``decoder_hint="temporal_interp"`` the decoder starts from it and predicts what it misses.
"""

from __future__ import annotations

from typing import Sequence

import torch

DECODER_HINTS: tuple[str, ...] = ("none", "temporal_interp")
"""``none``: a hidden token is the mask token and its position (VideoMAE, the paper).
``temporal_interp``: a hidden token with a visible cube at its spatial position at some other
time also gets that cube's interpolation in time (:func:`temporal_interp`), embedded, and the
prediction there is that interpolation plus the decoder's output."""


def temporal_interp(
    cubes: torch.Tensor, visible: torch.Tensor, grid: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every cube predicted from the visible cubes at its spatial position.

    Args:
        cubes: float ``[B, N, P]``, tokens in VideoMAE order on ``grid``.
        visible: bool ``[B, N]``, True where the cube may be read.
        grid: the token grid ``(T', Hp, Wp)``, ``N = T'·Hp·Wp``.

    Returns:
        ``(interp, found)``: float ``[B, N, P]`` (``cubes``' dtype), the linear interpolation in
        time between the nearest visible cubes at the same spatial position before and after
        (weighted by the distance in ``t'``), the one of them there is when only one is, zero
        where the position is hidden at every ``t'``; bool ``[B, N]``, where some cube was
        found. A visible cube is its own interpolation.
    """
    B, N, P = cubes.shape
    t, h, w = (int(g) for g in grid)
    if visible.shape != (B, N) or t * h * w != N:
        raise ValueError(f"cubes {tuple(cubes.shape)}, visible {tuple(visible.shape)} and grid {tuple(grid)} disagree")
    # Per spatial position, the last visible time slice at or before t' and the first at or after it.
    vis = visible.view(B, t, h * w)
    ts = torch.arange(t, device=visible.device).view(1, t, 1)
    before = torch.where(vis, ts, -1).cummax(dim=1).values
    after = torch.where(vis, ts, t).flip(1).cummin(dim=1).values.flip(1)
    grid_cubes = cubes.reshape(B, t, h * w, P)
    prev = grid_cubes.gather(1, before.clamp(min=0).unsqueeze(-1).expand(B, t, h * w, P))
    nxt = grid_cubes.gather(1, after.clamp(max=t - 1).unsqueeze(-1).expand(B, t, h * w, P))
    has_prev, has_next = (before >= 0).unsqueeze(-1), (after < t).unsqueeze(-1)
    toward_next = ((ts - before).to(cubes.dtype) / (after - before).clamp(min=1).to(cubes.dtype)).unsqueeze(-1)
    between = prev + toward_next * (nxt - prev)
    interp = torch.where(
        has_prev & has_next, between, torch.where(has_prev, prev, torch.where(has_next, nxt, torch.zeros_like(prev)))
    )
    return interp.reshape(B, N, P), (has_prev | has_next).reshape(B, N)
