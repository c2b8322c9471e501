"""What the decoder is told about a hidden cube before it predicts it: the cubes seen at the
same spatial position at other times, or else the nearest seen cube (``FMAEConfig.decoder_hint``).

A face video's background and hair barely move, so a hidden cube is often close to the cube
seen at its place a moment before or after; a wall hidden at every time is close to the wall
seen beside it. These copies are the strongest naive predictors of those regions
(:mod:`fmae.evaluation.baselines`' ``temporal_interp``), and useless for a hidden eye. With
``decoder_hint="temporal_interp"`` the decoder is given that prediction and learns, token by
token, how much of it to keep and what to add.
"""

from __future__ import annotations

from typing import Sequence

import torch

DECODER_HINTS: tuple[str, ...] = ("none", "temporal_interp")
"""``none``: a hidden token is the mask token and its position (VideoMAE, the paper).
``temporal_interp``: a hidden token also gets :func:`temporal_hint`'s cube, embedded, with a
token saying which kind of hint it is; the prediction there is the decoder's output plus the
hint times a gate (0–1) the decoder computes for that token."""


def _grid_coords(grid: Sequence[int], device: torch.device) -> torch.Tensor:
    """int64 ``[N, 3]``: ``(t', h, w)`` of every token, in token order."""
    t, h, w = grid
    axes = torch.meshgrid(
        torch.arange(t, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return torch.stack(axes, dim=-1).reshape(-1, 3)


def nearest_visible_index(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """int64 ``[B, N]``: for every token, the visible token nearest to it on the token
    grid ``(t', h, w)`` (Euclidean), the lowest index among equally near ones; a visible
    token is its own nearest. mask: bool ``[B, N]``, True = masked, at least one visible
    token per row."""
    B, N = mask.shape
    coords = _grid_coords(grid, mask.device)
    d2 = (coords[:, None, :] - coords[None, :, :]).square().sum(-1)  # [N, N] squared distances
    # One integer key per (query, candidate): distance first, then the candidate's index,
    # so the smallest key is the nearest token with the lowest index; hidden candidates last.
    keys = d2 * N + torch.arange(N, device=mask.device)
    hidden = int(d2.max()) * N + N
    return torch.stack([keys.masked_fill(row, hidden).argmin(dim=1) for row in mask.unsqueeze(1)])


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


def temporal_hint(cubes: torch.Tensor, mask: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``temporal_interp`` baseline: :func:`temporal_interp`, and where a spatial position
    is hidden at every time, the nearest visible cube (:func:`nearest_visible_index`).

    cubes: float ``[B, N, P]``; mask: bool ``[B, N]``, True = masked, at least one visible
    token per row → ``(hint [B, N, P], found [B, N])``, ``found`` True where the hint is an
    interpolation in time, False where it is the nearest visible cube.
    """
    interp, found = temporal_interp(cubes, ~mask, grid)
    B, N, P = cubes.shape
    nearest = cubes.gather(1, nearest_visible_index(mask, grid).unsqueeze(-1).expand(B, N, P))
    return torch.where(found.unsqueeze(-1), interp, nearest), found
