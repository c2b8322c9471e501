"""Triton kernel for :func:`fmae.ops.decoder_input`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fmae.ops.triton import on_device

_TILE = 4096  # elements of one [BLOCK_M, BLOCK_C] output tile


@triton.jit
def _decoder_input_kernel(
    tokens_ptr,
    mask_ptr,
    pos_ptr,
    index_ptr,
    out_ptr,
    num_rows,
    V,
    L,
    N,
    C,
    ACC: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # Row r = b·L + l of the output starts from visible token l of clip b (l < V) or from
    # the mask token, and adds the position embedding of grid position index[b, l],
    # cast to the output dtype first and added in ACC (as torch's x + pos.to(x.dtype)).
    ty = out_ptr.dtype.element_ty
    r = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    r_mask = r < num_rows
    c_mask = c < C
    m = r_mask[:, None] & c_mask[None, :]
    idx = tl.load(index_ptr + r, mask=r_mask, other=0)
    b = r // L
    j = r % L  # position within the clip's row of L
    visible = j < V
    tok = tl.load(tokens_ptr + (b * V + j)[:, None] * C + c[None, :], mask=m & visible[:, None], other=0.0)
    mask_token = tl.load(mask_ptr + c, mask=c_mask, other=0.0)
    x = tl.where(visible[:, None], tok, mask_token[None, :])
    # An index out of range (possible only when the caller skipped its check) adds no
    # position embedding, so that memory is never read out of bounds.
    in_range = (idx >= 0) & (idx < N)
    pos = tl.load(pos_ptr + idx[:, None] * C + c[None, :], mask=m & in_range[:, None], other=0.0)
    y = x.to(ACC) + pos.to(ty).to(ACC)
    tl.store(out_ptr + r[:, None] * C + c[None, :], y.to(ty), mask=m)


def decoder_input_triton(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor
) -> torch.Tensor:
    """``out[b, l] = (tokens[b, l] if l < V else mask_token) + pos_table[index[b, l]]``.

    Args:
        tokens: contiguous ``[B, V, C]`` float32, bfloat16, float16 or float64.
        index: contiguous ``int64 [B, L]``, ``L >= V``, values already checked to lie in
            ``[0, N)``.
        mask_token: contiguous ``[C]``, the tokens' dtype.
        pos_table: contiguous ``[N, C]``, any float dtype (cast to the tokens' first).

    Returns:
        ``[B, L, C]`` in the tokens' dtype, on their device.
    """
    B, V, C = tokens.shape
    L = index.shape[1]
    out = tokens.new_empty((B, L, C))
    if out.numel() == 0:
        return out
    block_c = min(triton.next_power_of_2(C), _TILE)
    block_m = _TILE // block_c
    grid = (triton.cdiv(B * L, block_m), triton.cdiv(C, block_c))
    acc = tl.float64 if tokens.dtype == torch.float64 else tl.float32
    with on_device(tokens):
        _decoder_input_kernel[grid](
            tokens,
            mask_token,
            pos_table,
            index,
            out,
            B * L,
            V,
            L,
            pos_table.shape[0],
            C,
            ACC=acc,
            BLOCK_M=block_m,
            BLOCK_C=block_c,
        )
    return out
