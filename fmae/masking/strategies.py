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
"""

from __future__ import annotations

from typing import Sequence

import torch

from fmae.face import NUM_REGIONS
from fmae.ops import region_histogram, token_labels

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


def mask_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of the ``index``-th mask draw of a run (a step, or a held-out clip), seeded by ``(seed, index)``.

    Masks that depend only on the seed and the index make a resumed run and an evaluation
    independent of how the work was batched: no generator state is saved.
    """
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)
