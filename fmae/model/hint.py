"""What the decoder is told about a hidden cube before it predicts it: the cubes seen at the
same spatial position at other times, and where there are none, the nearest seen cube
(``FMAEConfig.decoder_hint``).

A face video's background and hair barely move, so a hidden cube is often close to the cube
seen at its place a moment before or after. Interpolating between them in time is the
strongest naive predictor of those regions (:mod:`fmae.evaluation.baselines`); with
``decoder_hint="temporal_interp"`` the decoder starts from it and predicts what it misses. A
wall hidden at every time is close to the wall seen beside it, and a hidden eye is nothing like
the skin beside it: ``interp_nearest`` also gives the decoder the nearest seen cube there, and
the decoder decides, token by token, how much of it to keep.
"""

from __future__ import annotations

from typing import Sequence

import torch

DECODER_HINTS: tuple[str, ...] = ("none", "temporal_interp", "interp_nearest")
"""``none``: a hidden token is the mask token and its position (VideoMAE, the paper).
``temporal_interp``: a hidden token with a visible cube at its spatial position at some other
time also gets that cube's interpolation in time (:func:`temporal_interp`), embedded, and the
prediction there is that interpolation plus the decoder's output.
``interp_nearest``: as ``temporal_interp``, and a hidden token whose position is hidden at every
time gets the nearest visible cube (:func:`nearest_visible_index`), embedded by a layer of its
own with a token of its own kind; the prediction there is the decoder's output plus that cube times a gate in (0, 1)
the decoder computes for the token (starting nearly closed)."""


def _grid_coords(grid: Sequence[int], device: torch.device) -> torch.Tensor:
    """int64 ``[N, 3]``: ``(t', h, w)`` of every token, in token order."""
    t, h, w = grid
    axes = torch.meshgrid(
        torch.arange(t, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    return torch.stack(axes, dim=-1).reshape(-1, 3)


def nearest_visible_index(mask: torch.Tensor, grid: Sequence[int], queries: torch.Tensor | None = None) -> torch.Tensor:
    """int64 ``[B, N]`` (or ``[B, K]`` with ``queries``): for every token (or the int64 ``[B, K]``
    ``queries``), the visible token nearest to it on the token grid ``(t', h, w)`` (Euclidean),
    the lowest index among equally near ones; a visible token is its own nearest. mask: bool
    ``[B, N]``, True = masked, at least one visible token per row."""
    B, N = mask.shape
    t, h, w = (int(g) for g in grid)
    coords = _grid_coords((t, h, w), mask.device)
    d2 = (coords[:, None, :] - coords[None, :, :]).square().sum(-1)  # [N, N] squared distances
    # One integer key per (query, candidate): distance first, then the candidate's index,
    # so the smallest key is the nearest token with the lowest index; hidden candidates last
    # (the largest distance is known from the grid: no device-to-host read).
    keys = d2 * N + torch.arange(N, device=mask.device)
    hidden = ((t - 1) ** 2 + (h - 1) ** 2 + (w - 1) ** 2) * N + N
    rows = keys.expand(B, N, N) if queries is None else keys[queries]  # [B, N or K, N]
    return rows.masked_fill(mask.unsqueeze(1), hidden).argmin(dim=2)


def temporal_neighbours(
    visible: torch.Tensor, grid: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where every token's temporal interpolation reads from (:func:`temporal_interp`).

    visible: bool ``[B, N]``; grid ``(T', Hp, Wp)``, ``N = T'·Hp·Wp`` → ``(before, after,
    toward_after, found)``: int64 ``[B, N]`` token indices of the nearest visible token at the
    same spatial position at or before and at or after (each the other where only one exists,
    some valid index where neither does), float64 ``[B, N]`` the weight of ``after`` (a ratio of
    small integers, so cast to any dtype it rounds once), and bool
    ``[B, N]`` where some visible token was found. Indices only, so a caller gathers the cubes
    of just the tokens it needs.
    """
    B, N = visible.shape
    t, h, w = (int(g) for g in grid)
    if t * h * w != N:
        raise ValueError(f"visible {tuple(visible.shape)} and grid {tuple(grid)} disagree")
    # Per spatial position, the last visible time slice at or before t' and the first at or after it.
    vis = visible.view(B, t, h * w)
    ts = torch.arange(t, device=visible.device).view(1, t, 1)
    before = torch.where(vis, ts, -1).cummax(dim=1).values
    after = torch.where(vis, ts, t).flip(1).cummin(dim=1).values.flip(1)
    has_before, has_after = before >= 0, after < t
    toward_after = torch.where(
        has_before & has_after, (ts - before).double() / (after - before).clamp(min=1).double(), 0.0
    )
    # Only one side: both read it; neither: any index will do, ``found`` zeroes the result.
    before, after = torch.where(has_before, before, after), torch.where(has_after, after, before)
    spatial = torch.arange(h * w, device=visible.device).view(1, 1, h * w)
    before, after = (s.clamp(0, t - 1) * (h * w) + spatial for s in (before, after))
    found = (has_before | has_after).reshape(B, N)
    return before.reshape(B, N), after.reshape(B, N), toward_after.reshape(B, N), found


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
    if visible.shape != (B, N):
        raise ValueError(f"cubes {tuple(cubes.shape)}, visible {tuple(visible.shape)} and grid {tuple(grid)} disagree")
    before, after, toward_after, found = temporal_neighbours(visible, grid)
    return interpolate(cubes, before, after, toward_after, found), found


def interpolate(
    cubes: torch.Tensor, before: torch.Tensor, after: torch.Tensor, toward_after: torch.Tensor, found: torch.Tensor
) -> torch.Tensor:
    """cubes ``[B, N, P]`` and :func:`temporal_neighbours`' ``[B, K]`` rows (all ``N`` tokens, or
    the ``K`` a caller picked) → ``[B, K, P]`` in ``cubes``' dtype, zero where nothing was found."""
    P = cubes.shape[-1]
    a = cubes.gather(1, before.unsqueeze(-1).expand(*before.shape, P))
    b = cubes.gather(1, after.unsqueeze(-1).expand(*after.shape, P))
    out = a + toward_after.unsqueeze(-1).to(cubes.dtype) * (b - a)
    return out * found.unsqueeze(-1).to(cubes.dtype)
