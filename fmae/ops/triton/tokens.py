"""Triton kernels for :func:`fmae.ops.gather_tokens` and :func:`fmae.ops.scatter_tokens`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fmae.ops.triton import on_device

# A copy only moves bits, so every dtype is copied as the integer of its width: one
# compiled kernel per width, and bit-exact results whatever the values (NaN payloads too).
_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_TILE = 4096  # elements of one [BLOCK_M, BLOCK_C] copy tile


@triton.jit
def _copy_rows_kernel(
    src_ptr,
    dst_ptr,
    index_ptr,
    num_rows,
    M,
    N,
    C,
    stride_b,
    stride_t,
    stride_c,
    GATHER: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # Row r = b·M + m of the [B, M] index moves token index[b, m] of the [B, N, C] side
    # to/from token m of the [B, M, C] side: gather reads the former, scatter writes it.
    # The side read (src) is strided (an expanded gradient has stride 0), the side
    # written contiguous.
    r = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    r_mask = r < num_rows
    idx = tl.load(index_ptr + r, mask=r_mask, other=0)
    b = r // M
    if GATHER:
        src_row, dst_row = b * stride_b + idx * stride_t, r * C
    else:
        src_row, dst_row = b * stride_b + (r % M) * stride_t, (b * N + idx) * C
    m = r_mask[:, None] & (c < C)[None, :]
    vals = tl.load(src_ptr + src_row[:, None] + c[None, :] * stride_c, mask=m)
    tl.store(dst_ptr + dst_row[:, None] + c[None, :], vals, mask=m)


def _launch(src: torch.Tensor, dst: torch.Tensor, index: torch.Tensor, n: int, gather: bool) -> None:
    B, M = index.shape
    C = src.shape[-1]
    if B * M * C == 0:
        return
    bits = _BITS[src.element_size()]
    block_c = min(triton.next_power_of_2(C), _TILE)
    block_m = _TILE // block_c
    grid = (triton.cdiv(B * M, block_m), triton.cdiv(C, block_c))
    with on_device(src):
        _copy_rows_kernel[grid](
            src.view(bits),
            dst.view(bits),
            index,
            B * M,
            M,
            n,
            C,
            *src.stride(),
            GATHER=gather,
            BLOCK_M=block_m,
            BLOCK_C=block_c,
        )


def gather_tokens_triton(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, m] = x[b, index[b, m]]``.

    Args:
        x: ``[B, N, C]``, any strides, any dtype (copied bit for bit).
        index: contiguous ``int64 [B, M]``, values already checked to lie in ``[0, N)``.

    Returns:
        contiguous ``[B, M, C]`` in ``x``'s dtype, on its device.
    """
    out = x.new_empty((x.shape[0], index.shape[1], x.shape[2]))
    _launch(x, out, index, x.shape[1], gather=True)
    return out


def scatter_tokens_triton(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``out[b, index[b, m]] = src[b, m]`` on a zero grid.

    Args:
        src: ``[B, M, C]``, any strides, any dtype (copied bit for bit).
        index: contiguous ``int64 [B, M]``, values already checked to lie in ``[0, n)``
            and distinct within a row (else which row lands is undefined).
        n: tokens of the output grid.

    Returns:
        contiguous ``[B, n, C]`` in ``src``'s dtype, on its device, zero where no token was placed.
    """
    out = src.new_zeros((src.shape[0], n, src.shape[2]))
    _launch(src, out, index, n, gather=False)
    return out
