"""Triton kernel for :func:`fmae.ops.region_histogram`: per-token class coverage."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fmae.ops.triton import on_device

# Elements of one [BLOCK_N, BLOCK_V, K_BLOCK] compare tile: 64 per thread at 4 warps.
_TILE = 8192
# Tokens per program, capped so that tiny tubelets do not blow up the per-token registers.
_MAX_TOKENS = 128


@triton.jit
def _region_histogram_kernel(
    maps_ptr,
    out_ptr,
    num_tokens,
    N,
    Hp,
    Wp,
    stride_b,
    stride_t,
    W,
    K,
    TT: tl.constexpr,
    TH: tl.constexpr,
    TW: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    K_BLOCK: tl.constexpr,
):
    # One program counts BLOCK_N tokens (flattened over batch), BLOCK_V tubelet pixels
    # and K_BLOCK classes at a time with a broadcast compare. Scalar arguments equal to 1
    # arrive as Python ints (Triton specialises them), so int64 comes from the tensors.
    V: tl.constexpr = TT * TH * TW
    t = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_mask = t < num_tokens
    b, n = t // N, t % N
    ti, hi, wi = n // (Hp * Wp), (n // Wp) % Hp, n % Wp
    token_base = b * stride_b + ti * TT * stride_t + hi * TH * W + wi * TW  # [BLOCK_N] int64
    for k0 in range(0, K, K_BLOCK):
        k = k0 + tl.arange(0, K_BLOCK)
        counts = tl.zeros([BLOCK_N, K_BLOCK], dtype=tl.int32)
        for v0 in range(0, V, BLOCK_V):
            v = v0 + tl.arange(0, BLOCK_V)
            dt, dh, dw = v // (TH * TW), (v // TW) % TH, v % TW
            pixel = dt.to(tl.int64) * stride_t + dh * W + dw  # [BLOCK_V] int64
            m = t_mask[:, None] & (v < V)[None, :]
            ids = tl.load(maps_ptr + token_base[:, None] + pixel[None, :], mask=m, other=0)
            hit = (ids[:, :, None] == k[None, None, :]) & m[:, :, None]
            counts += tl.sum(hit.to(tl.int32), axis=1)
        out = counts.to(tl.float32) / V
        tl.store(out_ptr + t[:, None] * K + k[None, :], out, mask=t_mask[:, None] & (k < K)[None, :])


def region_histogram_triton(region_maps: torch.Tensor, tubelet: tuple[int, int, int], num_classes: int) -> torch.Tensor:
    """Fraction of each tubelet's pixels per class.

    Args:
        region_maps: contiguous ``uint8 [B, T, H, W]``, ids already checked to be below
            ``num_classes``; a CUDA tensor (or a CPU tensor under ``TRITON_INTERPRET=1``).
        tubelet: ``(tt, th, tw)``, dividing ``(T, H, W)``.
        num_classes: ``K``.

    Returns:
        ``float32 [B, N, K]`` on ``region_maps``' device, ``N = (T/tt)·(H/th)·(W/tw)``,
        token ``n = (ti·Hp + hi)·Wp + wi``.
    """
    B, T, H, W = region_maps.shape
    tt, th, tw = tubelet
    Hp, Wp = H // th, W // tw
    N = (T // tt) * Hp * Wp
    out = torch.empty((B, N, num_classes), dtype=torch.float32, device=region_maps.device)
    if out.numel() == 0:
        return out
    k_block = min(triton.next_power_of_2(num_classes), 32)
    block_v = min(triton.next_power_of_2(tt * th * tw), _TILE // k_block)
    block_n = min(_MAX_TOKENS, _TILE // (k_block * block_v))
    grid = (triton.cdiv(B * N, block_n),)
    with on_device(region_maps):
        _region_histogram_kernel[grid](
            region_maps,
            out,
            B * N,
            N,
            Hp,
            Wp,
            T * H * W,
            H * W,
            W,
            num_classes,
            TT=tt,
            TH=th,
            TW=tw,
            BLOCK_N=block_n,
            BLOCK_V=block_v,
            K_BLOCK=k_block,
        )
    return out
