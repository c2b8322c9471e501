"""Which tubelet tokens the encoder does not see: the facial mask and its baselines.

Every function returns ``bool [B, N]`` (True = masked) in VideoMAE token order
``n = (ti * Hp + hi) * Wp + wi`` over the token grid ``(T', Hp, Wp)``, with the same
number of masked tokens in every row, so the visible tokens form a dense tensor. That
number depends only on the strategy, the grid and the ratio (:func:`num_masked`), so
callers can pass it to :func:`fmae.ops.visible_index` without a host synchronisation.

All masks are made by sorting keys, as in facebookresearch/mae: each candidate gets a
key, the ``k`` smallest keys are masked. For the facial mask the key is the token's
region id (its priority) followed by random bits, so whole regions go first and the
random bits only decide within the one region that crosses the budget. Everything is
batched on the input's device and seeded by ``generator``, which must live on that
device.

Budgets (``round`` is Python's, half to even):

- ``facial``, ``random``: ``round(ratio * N)`` tokens;
- ``tube``: the same ``round(ratio * Hp * Wp)`` spatial positions in every time slice;
- ``frame``: ``round(ratio * T')`` whole time slices.

Decoder masking (VideoMAE V2's *dual masking*, Wang et al., CVPR 2023): the decoder
may reconstruct only ``K = round(keep * M)`` of the ``M`` masked tokens of each clip
(:func:`num_decoder_targets`); :func:`decoder_targets` picks them, by
:data:`DECODER_STRATEGIES`, with the same sort-by-key scheme.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fmae.face import NUM_REGIONS, FaceRegion
from fmae.ops import region_histogram, token_labels, visible_index

DEFAULT_TUBELET: tuple[int, int, int] = (2, 16, 16)
STRATEGIES: tuple[str, ...] = ("facial", "tube", "random", "frame")

# Random tie-break bits below the region id in a facial sort key; ids need only 3 bits,
# so the int64 key cannot overflow and the region always decides first.
_TIE_BITS = 40


def token_grid(size: Sequence[int], tubelet: Sequence[int] = DEFAULT_TUBELET) -> tuple[int, int, int]:
    """Token grid ``(T', Hp, Wp)`` of a clip or region map of size ``(T, H, W)``.

    Raises ``ValueError`` when the tubelet does not divide the size.
    """
    size, tubelet = tuple(int(s) for s in size), tuple(int(t) for t in tubelet)
    if len(size) != 3 or len(tubelet) != 3 or min(tubelet) < 1:
        raise ValueError(f"size and tubelet must be three positive sizes, got {size} and {tubelet}")
    if any(s % t for s, t in zip(size, tubelet)) or min(size) < 1:
        raise ValueError(f"tubelet {tubelet} must divide the (T, H, W) = {size}")
    return size[0] // tubelet[0], size[1] // tubelet[1], size[2] // tubelet[2]


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"ratio must be a number, got {type(ratio).__name__}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return float(ratio)


def _check_grid(grid: Sequence[int]) -> tuple[int, int, int]:
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid must be three positive sizes (T', Hp, Wp), got {grid}")
    return grid


def num_masked(strategy: str, grid: Sequence[int], ratio: float) -> int:
    """How many of the ``N = T'·Hp·Wp`` tokens ``strategy`` masks in every row.

    Args:
        strategy: one of :data:`STRATEGIES`.
        grid: ``(T', Hp, Wp)``.
        ratio: masking ratio in ``[0, 1]``.
    """
    ratio, (t, h, w) = _check_ratio(ratio), _check_grid(grid)
    if strategy in ("facial", "random"):
        return round(ratio * t * h * w)
    if strategy == "tube":
        return t * round(ratio * h * w)
    if strategy == "frame":
        return round(ratio * t) * h * w
    raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {STRATEGIES}")


def _device_of(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    device = (
        torch.device(device)
        if device is not None
        else (generator.device if generator is not None else torch.device("cpu"))
    )
    if generator is not None and not _same_device(generator.device, device):
        raise ValueError(
            f"generator is on {generator.device}, the mask is made on {device}; use a generator on {device.type}"
        )
    return device


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same place when one of them names no index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _mask_smallest(keys: torch.Tensor, k: int) -> torch.Tensor:
    """``bool`` mask of the ``k`` smallest keys of each row of ``keys [B, L]``."""
    order = torch.argsort(keys, dim=1)
    mask = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    return mask.scatter_(1, order[:, :k], True)


def _random_rows(
    batch: int, length: int, k: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``bool [batch, length]`` with ``k`` uniformly random True entries per row."""
    noise = torch.rand((batch, length), generator=generator, device=device)
    return _mask_smallest(noise, k)


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got {batch!r}")
    return batch


def random_mask(
    batch: int,
    grid: Sequence[int],
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mask ``round(ratio·N)`` tokens per clip, uniformly at random (MAE's baseline).

    Args:
        batch: number of clips ``B``.
        grid: token grid ``(T', Hp, Wp)``, ``N = T'·Hp·Wp``.
        ratio: masking ratio in ``[0, 1]``.
        generator: seeds the draw; must be on ``device``.
        device: where the mask is made (default: the generator's device, else CPU).

    Returns:
        ``bool [B, N]``, True = masked.
    """
    grid, device = _check_grid(grid), _device_of(generator, device)
    n = grid[0] * grid[1] * grid[2]
    return _random_rows(_check_batch(batch), n, num_masked("random", grid, ratio), generator, device)


def tube_mask(
    batch: int,
    grid: Sequence[int],
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """VideoMAE's tube mask: one random set of ``round(ratio·Hp·Wp)`` spatial positions,
    masked in every time slice. Arguments and result as :func:`random_mask`."""
    (t, h, w), device = _check_grid(grid), _device_of(generator, device)
    batch = _check_batch(batch)
    spatial = _random_rows(batch, h * w, round(_check_ratio(ratio) * h * w), generator, device)  # [B, Hp·Wp]
    return spatial.unsqueeze(1).expand(batch, t, h * w).reshape(batch, t * h * w)


def frame_mask(
    batch: int,
    grid: Sequence[int],
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Frame mask: ``round(ratio·T')`` random tubelet time slices hidden whole.
    Arguments and result as :func:`random_mask`."""
    (t, h, w), device = _check_grid(grid), _device_of(generator, device)
    batch = _check_batch(batch)
    slices = _random_rows(batch, t, round(_check_ratio(ratio) * t), generator, device)  # [B, T']
    return slices.unsqueeze(2).expand(batch, t, h * w).reshape(batch, t * h * w)


def facial_mask(
    region_maps: torch.Tensor,
    ratio: float,
    tubelet: Sequence[int] = DEFAULT_TUBELET,
    generator: torch.Generator | None = None,
    *,
    min_coverage: float = 0.1,
    backend: str | None = "auto",
) -> torch.Tensor:
    """The paper's facial mask (Algorithm 1): whole regions in priority order.

    Each token is labelled with one region (:func:`fmae.ops.token_labels` of
    :func:`fmae.ops.region_histogram`); regions are masked whole in the order of
    :class:`fmae.face.FaceRegion` (left eye, right eye, nose, mouth, hair, skin,
    background) until ``round(ratio·N)`` tokens are masked; in the region that
    crosses the budget, the tokens are drawn at random. Labels are taken per token,
    that is per tubelet time slice, so the mask follows a moving region through the
    clip instead of repeating one spatial pattern.

    Args:
        region_maps: ``uint8 [B, T, H, W]`` (or ``[T, H, W]``) of
            :class:`fmae.face.FaceRegion` ids.
        ratio: masking ratio in ``[0, 1]``.
        tubelet: ``(tt, th, tw)``, dividing ``(T, H, W)``.
        generator: seeds the choice inside the crossing region; must be on the maps'
            device.
        min_coverage: passed to :func:`fmae.ops.token_labels`.
        backend: backend of :func:`fmae.ops.region_histogram`. Region ids are not
            range-checked on CUDA tensors (that would be a host synchronisation).

    Returns:
        ``bool [B, N]`` (``[N]`` for an unbatched map), True = masked.
    """
    ratio = _check_ratio(ratio)
    _device_of(generator, region_maps.device if isinstance(region_maps, torch.Tensor) else None)
    hist = region_histogram(region_maps, tuple(tubelet), NUM_REGIONS, backend=backend, check=False)
    unbatched = hist.dim() == 2
    labels = token_labels(hist.unsqueeze(0) if unbatched else hist, min_coverage)  # int64 [B, N]
    B, N = labels.shape
    tie = torch.randint(0, 1 << _TIE_BITS, (B, N), generator=generator, device=labels.device)
    mask = _mask_smallest((labels << _TIE_BITS) | tie, round(ratio * N))
    return mask[0] if unbatched else mask


def make_mask(
    strategy: str,
    ratio: float,
    *,
    batch: int,
    grid: Sequence[int],
    region_maps: torch.Tensor | None = None,
    tubelet: Sequence[int] = DEFAULT_TUBELET,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The mask of ``strategy`` for a batch: one call site for training loops.

    Args:
        strategy: one of :data:`STRATEGIES`.
        ratio: masking ratio in ``[0, 1]``.
        batch, grid: batch size and token grid ``(T', Hp, Wp)``.
        region_maps: ``uint8 [batch, T, H, W]``; required by ``"facial"`` (its grid
            under ``tubelet`` must equal ``grid``), ignored by the others.
        generator, device: as in :func:`random_mask`.

    Returns:
        ``bool [batch, N]`` with :func:`num_masked` ``(strategy, grid, ratio)`` True per row.
    """
    grid = _check_grid(grid)
    if strategy == "facial":
        if not isinstance(region_maps, torch.Tensor) or region_maps.dim() != 4:
            raise ValueError("the facial mask needs region_maps, a uint8 [B, T, H, W] tensor")
        if region_maps.shape[0] != batch or token_grid(region_maps.shape[1:], tubelet) != grid:
            raise ValueError(
                f"region_maps {tuple(region_maps.shape)} do not match batch {batch} and token grid {grid} "
                f"under tubelet {tuple(tubelet)}"
            )
        if device is not None and not _same_device(torch.device(device), region_maps.device):
            raise ValueError(f"region_maps are on {region_maps.device}, the mask is asked on {device}")
        return facial_mask(region_maps, ratio, tubelet, generator)
    makers = {"random": random_mask, "tube": tube_mask, "frame": frame_mask}
    if strategy not in makers:
        raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {STRATEGIES}")
    return makers[strategy](batch, grid, ratio, generator, device)


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
