"""Per-token region coverage of region maps, and one region label per token.

The masking strategy needs, for every tubelet token, how much of each facial region it
covers. ``region_histogram`` counts it over the tubelet's pixels; ``token_labels`` turns
the counts into one region id per token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmae.ops import _backend

DEFAULT_TUBELET: tuple[int, int, int] = (2, 16, 16)


def region_histogram_reference(
    region_maps: torch.Tensor, tubelet: tuple[int, int, int], num_classes: int
) -> torch.Tensor:
    """Plain-torch reference: ``one_hot`` then ``avg_pool3d`` over each tubelet.

    region_maps: ``uint8 [B, T, H, W]``; returns ``float32 [B, N, K]``.
    """
    B = region_maps.shape[0]
    one_hot = F.one_hot(region_maps.long(), num_classes).permute(0, 4, 1, 2, 3).float()  # [B, K, T, H, W]
    pooled = F.avg_pool3d(one_hot, kernel_size=tubelet, stride=tubelet)  # [B, K, T', Hp, Wp]
    return pooled.reshape(B, num_classes, -1).transpose(1, 2).contiguous()


def _cpp(region_maps: torch.Tensor, tubelet: tuple[int, int, int], num_classes: int) -> torch.Tensor:
    ext = _backend.cpp_extension()
    B, T, H, W = region_maps.shape
    out = torch.empty((B, _num_tokens(region_maps.shape, tubelet), num_classes), dtype=torch.float32)
    ext.region_histogram(region_maps.data_ptr(), out.data_ptr(), B, T, H, W, *tubelet, num_classes)
    return out


def _cuda(region_maps: torch.Tensor, tubelet: tuple[int, int, int], num_classes: int) -> torch.Tensor:
    ext = _backend.cuda_extension()
    B, T, H, W = region_maps.shape
    out = torch.empty(
        (B, _num_tokens(region_maps.shape, tubelet), num_classes), dtype=torch.float32, device=region_maps.device
    )
    stream = torch.cuda.current_stream(region_maps.device).cuda_stream
    ext.region_histogram(region_maps.data_ptr(), out.data_ptr(), B, T, H, W, *tubelet, num_classes, stream)
    return out


def _triton(region_maps: torch.Tensor, tubelet: tuple[int, int, int], num_classes: int) -> torch.Tensor:
    from fmae.ops.triton.region_histogram import region_histogram_triton

    return region_histogram_triton(region_maps, tubelet, num_classes)


_IMPLS = {"reference": region_histogram_reference, "cpp": _cpp, "cuda": _cuda, "triton": _triton}


def _num_tokens(shape: torch.Size | tuple[int, ...], tubelet: tuple[int, int, int]) -> int:
    _, T, H, W = shape
    return (T // tubelet[0]) * (H // tubelet[1]) * (W // tubelet[2])


@torch.library.custom_op("fmae::region_histogram", mutates_args=())
def _region_histogram_op(
    region_maps: torch.Tensor, tt: int, th: int, tw: int, num_classes: int, backend: str
) -> torch.Tensor:
    return _IMPLS[backend](region_maps, (tt, th, tw), num_classes)


@_region_histogram_op.register_fake
def _(region_maps: torch.Tensor, tt: int, th: int, tw: int, num_classes: int, backend: str) -> torch.Tensor:
    B = region_maps.shape[0]
    return region_maps.new_empty((B, _num_tokens(region_maps.shape, (tt, th, tw)), num_classes), dtype=torch.float32)


def region_histogram(
    region_maps: torch.Tensor,
    tubelet: tuple[int, int, int] = DEFAULT_TUBELET,
    num_classes: int = 7,
    backend: str | None = "auto",
    check: bool = True,
) -> torch.Tensor:
    """Fraction of each tubelet's pixels that falls in each region.

    Args:
        region_maps: ``uint8 [B, T, H, W]`` (or ``[T, H, W]``) of region ids in
            ``[0, num_classes)`` (see :class:`fmae.face.FaceRegion`).
        tubelet: ``(tt, th, tw)``, which must divide ``(T, H, W)``.
        num_classes: number of region ids ``K``.
        backend: ``"auto"``, ``"cuda"``, ``"triton"``, ``"cpp"`` or ``"reference"``.
        check: on CUDA tensors, verify that every id is below ``num_classes`` (one host
            synchronisation). CPU backends always check, at no extra cost.

    Returns:
        ``float32 [B, N, K]`` (``[N, K]`` for an unbatched map) with
        ``N = (T/tt)·(H/th)·(W/tw)`` in VideoMAE token order
        ``n = (ti·Hp + hi)·Wp + wi``; every row sums to 1.
    """
    if not isinstance(region_maps, torch.Tensor) or region_maps.dtype != torch.uint8:
        got = region_maps.dtype if isinstance(region_maps, torch.Tensor) else type(region_maps).__name__
        raise TypeError(f"region_maps must be a uint8 tensor, got {got}")
    unbatched = region_maps.dim() == 3
    if unbatched:
        region_maps = region_maps.unsqueeze(0)
    if region_maps.dim() != 4:
        raise ValueError(f"region_maps must be [B, T, H, W] or [T, H, W], got shape {tuple(region_maps.shape)}")
    tubelet = tuple(int(s) for s in tubelet)
    if len(tubelet) != 3 or min(tubelet) < 1:
        raise ValueError(f"tubelet must be three positive sizes, got {tubelet}")
    if any(size % t for size, t in zip(region_maps.shape[1:], tubelet)):
        raise ValueError(f"tubelet {tubelet} must divide the map's (T, H, W) = {tuple(region_maps.shape[1:])}")
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in [1, 255], got {num_classes}")
    name = _backend.choose(backend, region_maps.device)
    # The C++ kernel checks ids as it counts; elsewhere it costs a pass (and a sync on GPU).
    needs_check = name != "cpp" and (check or region_maps.device.type == "cpu") and not torch.compiler.is_compiling()
    if needs_check and region_maps.numel() and int(region_maps.max()) >= num_classes:
        raise ValueError(f"region_maps holds ids >= num_classes ({num_classes})")
    hist = _region_histogram_op(region_maps.contiguous(), *tubelet, num_classes, name)
    return hist[0] if unbatched else hist


def token_labels(hist: torch.Tensor, min_coverage: float = 0.1) -> torch.Tensor:
    """One region id per token: the highest-priority region that covers enough of it.

    A token is labelled with the *lowest* region id (the paper's priority: eyes, nose,
    mouth, hair, skin, background) whose coverage is at least ``min_coverage``, so an
    eye that fills a tenth of a token wins over the skin around it. A token in which no
    region reaches ``min_coverage`` takes its largest region.

    Args:
        hist: ``float [..., N, K]`` from :func:`region_histogram`.
        min_coverage: coverage fraction in ``(0, 1]``.

    Returns:
        ``int64 [..., N]`` region ids.
    """
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    K = hist.shape[-1]
    covered = hist >= min_coverage
    ids = torch.arange(K, device=hist.device)
    first_covered = torch.where(covered, ids, K).amin(dim=-1)
    return torch.where(first_covered < K, first_covered, hist.argmax(dim=-1))
