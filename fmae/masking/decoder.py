"""Which masked tokens the decoder reconstructs: VideoMAE V2's *dual masking*.

Wang et al., CVPR 2023: the decoder
may reconstruct only ``K = round(keep * M)`` of the ``M`` masked tokens of each clip
(:func:`num_decoder_targets`); :func:`decoder_targets` picks them, by
:data:`DECODER_STRATEGIES`, with the same sort-by-key scheme.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fmae.face import NUM_REGIONS, FaceRegion
from fmae.masking.strategies import _TIE_BITS, DEFAULT_TUBELET, _check_grid, _device_of, _same_device, token_grid
from fmae.ops import region_histogram, token_labels, visible_index

DECODER_STRATEGIES: tuple[str, ...] = ("running_cell", "random", "facial")
"""How :func:`decoder_targets` picks the masked tokens the decoder reconstructs."""

RUNNING_CELL = 2
"""Side of the running cell: a ``2 × 2`` block of spatial token positions (VideoMAE V2)."""
# Above any priority << _TIE_BITS | tie: the key of a token that is not masked.
_NOT_MASKED = 1 << 62


def _check_keep(keep: float) -> float:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise TypeError(f"decoder keep must be a number, got {type(keep).__name__}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"decoder keep must be in (0, 1], got {keep}")
    return float(keep)


def num_decoder_targets(num_masked: int, keep: float) -> int:
    """``K = round(keep · M)``: how many of the ``M = num_masked`` masked tokens of each
    clip the decoder reconstructs under decoder masking ``keep`` in ``(0, 1]`` (1: all).

    Like :func:`num_masked`, it depends on settings only, so callers know it without a
    host synchronisation. It is 0 when ``keep · M < 0.5``: callers must refuse that.
    """
    keep = _check_keep(keep)
    if isinstance(num_masked, bool) or not isinstance(num_masked, int) or num_masked < 0:
        raise ValueError(f"num_masked must be a non-negative int, got {num_masked!r}")
    return num_masked if keep == 1.0 else round(keep * num_masked)


def running_cell_order(grid: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Each token's place in VideoMAE V2's running cell, ``int64 [N]`` in ``{0, 1, 2, 3}``.

    The spatial grid is tiled with ``2 × 2`` cells; a token's cell position is
    ``c = 2·(hi mod 2) + (wi mod 2)`` (row-major in the cell) and its order is
    ``(c + ti) mod 4``, so the positions of one order shift by one cell place from each
    time slice to the next. VideoMAE V2's running-cell decoder mask at keep 1/2 keeps,
    in every slice, the two places of each cell with order ``(o, o + 1) mod 4`` for a
    random ``o`` per clip; :func:`decoder_targets` ranks masked tokens by
    ``(order + o) mod 4``, which is that pattern (and its 1/4 and 3/4 analogues) cut to
    exactly ``K`` tokens.
    """
    t, h, w = _check_grid(grid)
    ti = torch.arange(t, device=device).view(t, 1, 1)
    cell = (
        RUNNING_CELL * (torch.arange(h, device=device).view(1, h, 1) % RUNNING_CELL)
        + torch.arange(w, device=device).view(1, 1, w) % RUNNING_CELL
    )
    return ((cell + ti) % (RUNNING_CELL * RUNNING_CELL)).reshape(-1)


def decoder_priority(labels: torch.Tensor) -> torch.Tensor:
    """The ``facial`` decoder strategy's rank of a token from its region id (lower first):
    0 for the eyes, nose and mouth together, then hair 1, skin 2, background 3
    (Algorithm 1's order after its facial parts)."""
    return (labels - int(FaceRegion.MOUTH)).clamp_min(0)


def decoder_targets(
    mask: torch.Tensor,
    keep: float,
    strategy: str = "running_cell",
    grid: Sequence[int] | None = None,
    region_maps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    num_masked: int | None = None,
    *,
    tubelet: Sequence[int] = DEFAULT_TUBELET,
    min_coverage: float = 0.1,
    backend: str | None = "auto",
) -> torch.Tensor:
    """The masked tokens the decoder reconstructs (decoder masking): ``int64 [B, K]``.

    ``K = num_decoder_targets(M, keep)``, the same in every row; each row lists ``K`` of
    its masked tokens in ascending order. At ``keep = 1`` they are all ``M`` masked
    tokens, as :func:`fmae.ops.visible_index` gives them, and nothing is drawn from
    ``generator``. Otherwise every masked token gets a priority by ``strategy``, the
    ``K`` lowest are kept, and ties are broken at random (seeded by ``generator``):

    - ``running_cell``: VideoMAE V2's running cell (:func:`running_cell_order`), one
      random phase per clip;
    - ``random``: a uniformly random subset;
    - ``facial``: the masked cubes of the eyes, nose and mouth first, then hair, skin,
      background (:func:`decoder_priority`), tokens labelled as
      :func:`facial_mask` labels them (``region_maps`` needed).

    Everything runs on the mask's device without a host synchronisation when
    ``num_masked`` is given.

    Args:
        mask: ``bool [B, N]``, True = masked, ``M`` per row (as the maskers give it).
        keep: fraction of the masked tokens to reconstruct, in ``(0, 1]``.
        strategy: one of :data:`DECODER_STRATEGIES`.
        grid: the token grid ``(T', Hp, Wp)`` with ``N = T'·Hp·Wp``.
        region_maps: ``uint8 [B, T, H, W]``, for ``facial`` (its grid under ``tubelet``
            must be ``grid``); ignored by the others.
        generator: seeds the draw; on the mask's device.
        num_masked: ``M``; read from the mask's first row when ``None`` (a host sync).
        tubelet, min_coverage, backend: how ``facial`` labels tokens (:func:`facial_mask`).

    Returns:
        ``int64 [B, K]``, ascending in each row.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        raise TypeError(f"mask must be a bool [B, N] tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    keep = _check_keep(keep)
    if strategy not in DECODER_STRATEGIES:
        raise ValueError(f"unknown decoder strategy {strategy!r}; choose one of {DECODER_STRATEGIES}")
    if grid is None:
        raise ValueError("decoder_targets needs the token grid (T', Hp, Wp)")
    grid = _check_grid(grid)
    B, N = mask.shape
    if grid[0] * grid[1] * grid[2] != N:
        raise ValueError(f"the mask has {N} tokens per row, the grid {grid} has {grid[0] * grid[1] * grid[2]}")
    device = mask.device
    _device_of(generator, device)
    if num_masked is None:
        num_masked = int(mask[0].sum()) if B else 0
    k = num_decoder_targets(num_masked, keep)
    if k == num_masked:
        return visible_index(mask, num_masked)[1]
    if strategy == "facial":
        if not isinstance(region_maps, torch.Tensor) or region_maps.dim() != 4:
            raise ValueError("the facial decoder strategy needs region_maps, a uint8 [B, T, H, W] tensor")
        if region_maps.shape[0] != B or token_grid(region_maps.shape[1:], tubelet) != grid:
            raise ValueError(
                f"region_maps {tuple(region_maps.shape)} do not match batch {B} and token grid {grid} "
                f"under tubelet {tuple(tubelet)}"
            )
        if not _same_device(region_maps.device, device):
            raise ValueError(f"region_maps are on {region_maps.device}, the mask on {device}")
        hist = region_histogram(region_maps, tuple(tubelet), NUM_REGIONS, backend=backend, check=False)
        priority = decoder_priority(token_labels(hist, min_coverage))  # [B, N]
    elif strategy == "running_cell":
        phase = torch.randint(0, RUNNING_CELL * RUNNING_CELL, (B, 1), generator=generator, device=device)
        priority = (running_cell_order(grid, device).unsqueeze(0) + phase) % (RUNNING_CELL * RUNNING_CELL)
    else:
        priority = torch.zeros((1, N), dtype=torch.int64, device=device)
    tie = torch.randint(0, 1 << _TIE_BITS, (B, N), generator=generator, device=device)
    keys = ((priority << _TIE_BITS) | tie).masked_fill(~mask, _NOT_MASKED)
    chosen = torch.topk(keys, k, dim=1, largest=False, sorted=False).indices
    return chosen.sort(dim=1).values
