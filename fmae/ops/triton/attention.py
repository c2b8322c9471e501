"""Triton flash attention (FlashAttention-2) for :func:`fmae.ops.attention`.

Forward: one program per (block of queries, head, batch) walks the keys block by block with an
online softmax, so no ``N_q × N_k`` matrix is ever stored; it writes the output and
the per-row log-sum-exp. Backward: ``delta = rowsum(dO · O)``, then one kernel per
block of keys accumulates ``dK``, ``dV`` over the queries and one per block of queries
accumulates ``dQ`` over the keys, recomputing the probabilities from the saved
log-sum-exp (no atomics, so results are deterministic). Accumulation is float32
throughout; the head dimension is padded to a power of two with masked loads.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fmae.ops import _backend
from fmae.ops.triton import on_device

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 256


# Kernel conventions. Scores live in base 2 (scaled by log2 e) so that exponentials
# are exp2. With DOT_F32 (the interpreter, which multiplies bf16 tiles as raw
# integers) the loaded tiles are upcast to float32, which holds every bf16 and fp16
# value exactly; intermediates are rounded to the input dtype first (`.to(ty).to(x.dtype)`)
# so the products are those of the GPU. The helpers are written out inline because the
# interpreter re-patches triton.language on every call of a nested jit function.


@triton.jit
def _fwd_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    o_ptr,
    lse_ptr,
    sqb,
    sqh,
    sqn,
    sqd,
    skb,
    skh,
    skn,
    skd,
    svb,
    svh,
    svn,
    svd,
    smb,
    H,
    NQ,
    NK,
    qk_scale,
    D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    ty = o_ptr.dtype.element_ty
    b, h = tl.program_id(2).to(tl.int64), tl.program_id(1).to(tl.int64)
    pid_bh = b * H + h
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    mask_ptr += b * smb
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    m_ok = offs_m < NQ
    q = tl.load(q_ptr + offs_m[:, None] * sqn + offs_d[None, :] * sqd, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    kT_ptrs = k_ptr + offs_n[None, :] * skn + offs_d[:, None] * skd
    v_ptrs = v_ptr + offs_n[:, None] * svn + offs_d[None, :] * svd
    mask_ptrs = mask_ptr + offs_n
    for start_n in range(0, NK, BLOCK_N):
        n_ok = offs_n < NK - start_n
        kT = tl.load(kT_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_F32:
            kT = kT.to(tl.float32)
            v = v.to(tl.float32)
        valid = n_ok
        if HAS_MASK:
            valid = valid & (tl.load(mask_ptrs, mask=n_ok, other=1) == 0)
        s = tl.dot(q, kT, input_precision="ieee") * qk_scale
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row with no valid key yet keeps m = -inf; shifting by 0 instead avoids
        # -inf - -inf = NaN and leaves its p and alpha at 0.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_shift[:, None])
        alpha = tl.math.exp2(m_i - m_shift)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(ty).to(v.dtype), v, input_precision="ieee")
        m_i = m_new
        kT_ptrs += BLOCK_N * skn
        v_ptrs += BLOCK_N * svn
        mask_ptrs += BLOCK_N

    # Rows whose keys are all padding give 0, and lse = +inf makes their
    # recomputed probabilities 0 in the backward pass.
    has_key = l_i > 0
    l_safe = tl.where(has_key, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(has_key, m_i + tl.math.log2(l_safe), float("inf"))
    o_ptr += pid_bh * NQ * D
    tl.store(o_ptr + offs_m[:, None] * D + offs_d[None, :], out.to(ty), mask=m_ok[:, None] & d_ok[None, :])
    tl.store(lse_ptr + pid_bh * NQ + offs_m, lse, mask=m_ok)


@triton.jit
def _bwd_delta_kernel(
    o_ptr,
    do_ptr,
    delta_ptr,
    sdb,
    sdh,
    sdn,
    sdd,
    H,
    NQ,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b, h = tl.program_id(2).to(tl.int64), tl.program_id(1).to(tl.int64)
    pid_bh = b * H + h
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < NQ
    ok = m_ok[:, None] & (offs_d < D)[None, :]
    o = tl.load(o_ptr + pid_bh * NQ * D + offs_m[:, None] * D + offs_d[None, :], mask=ok, other=0.0)
    do = tl.load(do_ptr + b * sdb + h * sdh + offs_m[:, None] * sdn + offs_d[None, :] * sdd, mask=ok, other=0.0)
    tl.store(delta_ptr + pid_bh * NQ + offs_m, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=m_ok)


@triton.jit
def _bwd_dkdv_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dk_ptr,
    dv_ptr,
    sqb,
    sqh,
    sqn,
    sqd,
    skb,
    skh,
    skn,
    skd,
    svb,
    svh,
    svn,
    svd,
    sdb,
    sdh,
    sdn,
    sdd,
    smb,
    H,
    NQ,
    NK,
    qk_scale,
    sm_scale,
    D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    ty = dk_ptr.dtype.element_ty
    b, h = tl.program_id(2).to(tl.int64), tl.program_id(1).to(tl.int64)
    pid_bh = b * H + h
    q_ptr += b * sqb + h * sqh
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    do_ptr += b * sdb + h * sdh
    lse_ptr += pid_bh * NQ
    delta_ptr += pid_bh * NQ
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    n_ok = offs_n < NK
    kv_ok = n_ok[:, None] & d_ok[None, :]
    k = tl.load(k_ptr + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=kv_ok, other=0.0)
    v = tl.load(v_ptr + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=kv_ok, other=0.0)
    if DOT_F32:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    valid = n_ok
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + b * smb + offs_n, mask=n_ok, other=1) == 0)

    # Transposed tiles ([keys, queries]) so that dK and dV come out as rows of keys.
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    offs_m = tl.arange(0, BLOCK_M)
    qT_ptrs = q_ptr + offs_m[None, :] * sqn + offs_d[:, None] * sqd
    do_ptrs = do_ptr + offs_m[:, None] * sdn + offs_d[None, :] * sdd
    lse_ptrs = lse_ptr + offs_m
    delta_ptrs = delta_ptr + offs_m
    for start_m in range(0, NQ, BLOCK_M):
        m_ok = offs_m < NQ - start_m
        qT = tl.load(qT_ptrs, mask=d_ok[:, None] & m_ok[None, :], other=0.0)
        do = tl.load(do_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_F32:
            qT = qT.to(tl.float32)
            do = do.to(tl.float32)
        # lse = +inf past the last query zeroes those columns of p.
        lse = tl.load(lse_ptrs, mask=m_ok, other=float("inf"))
        delta = tl.load(delta_ptrs, mask=m_ok, other=0.0)
        pT = tl.math.exp2(tl.dot(k, qT, input_precision="ieee") * qk_scale - lse[None, :])
        pT = tl.where(valid[:, None], pT, 0.0)
        dv += tl.dot(pT.to(ty).to(do.dtype), do, input_precision="ieee")
        dpT = tl.dot(v, tl.trans(do), input_precision="ieee")
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(ty).to(qT.dtype), tl.trans(qT), input_precision="ieee")
        qT_ptrs += BLOCK_M * sqn
        do_ptrs += BLOCK_M * sdn
        lse_ptrs += BLOCK_M
        delta_ptrs += BLOCK_M

    out = pid_bh * NK * D + offs_n[:, None] * D + offs_d[None, :]
    tl.store(dk_ptr + out, (dk * sm_scale).to(ty), mask=kv_ok)
    tl.store(dv_ptr + out, dv.to(ty), mask=kv_ok)


@triton.jit
def _bwd_dq_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dq_ptr,
    sqb,
    sqh,
    sqn,
    sqd,
    skb,
    skh,
    skn,
    skd,
    svb,
    svh,
    svn,
    svd,
    sdb,
    sdh,
    sdn,
    sdd,
    smb,
    H,
    NQ,
    NK,
    qk_scale,
    sm_scale,
    D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    ty = dq_ptr.dtype.element_ty
    b, h = tl.program_id(2).to(tl.int64), tl.program_id(1).to(tl.int64)
    pid_bh = b * H + h
    k_ptr += b * skb + h * skh
    v_ptr += b * svb + h * svh
    mask_ptr += b * smb
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    m_ok = offs_m < NQ
    qd_ok = m_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + b * sqb + h * sqh + offs_m[:, None] * sqn + offs_d[None, :] * sqd, mask=qd_ok, other=0.0)
    do = tl.load(do_ptr + b * sdb + h * sdh + offs_m[:, None] * sdn + offs_d[None, :] * sdd, mask=qd_ok, other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(lse_ptr + pid_bh * NQ + offs_m, mask=m_ok, other=float("inf"))
    delta = tl.load(delta_ptr + pid_bh * NQ + offs_m, mask=m_ok, other=0.0)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    kT_ptrs = k_ptr + offs_n[None, :] * skn + offs_d[:, None] * skd
    vT_ptrs = v_ptr + offs_n[None, :] * svn + offs_d[:, None] * svd
    mask_ptrs = mask_ptr + offs_n
    for start_n in range(0, NK, BLOCK_N):
        n_ok = offs_n < NK - start_n
        kT = tl.load(kT_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        vT = tl.load(vT_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        if DOT_F32:
            kT = kT.to(tl.float32)
            vT = vT.to(tl.float32)
        valid = n_ok
        if HAS_MASK:
            valid = valid & (tl.load(mask_ptrs, mask=n_ok, other=1) == 0)
        p = tl.math.exp2(tl.dot(q, kT, input_precision="ieee") * qk_scale - lse[:, None])
        p = tl.where(valid[None, :], p, 0.0)
        ds = p * (tl.dot(do, vT, input_precision="ieee") - delta[:, None])
        dq += tl.dot(ds.to(ty).to(kT.dtype), tl.trans(kT), input_precision="ieee")
        kT_ptrs += BLOCK_N * skn
        vT_ptrs += BLOCK_N * svn
        mask_ptrs += BLOCK_N

    tl.store(dq_ptr + pid_bh * NQ * D + offs_m[:, None] * D + offs_d[None, :], (dq * sm_scale).to(ty), mask=qd_ok)


def _blocks(head_dim: int, dtype: torch.dtype) -> dict[str, int]:
    """Tile sizes and warps per kernel.

    On the GPU: FlashAttention-2's usual tiles, halved for wide heads to stay within
    registers and shared memory; float32 elements are twice as large, so float32 gets
    half the tiles and no pipelining. Compiled for sm_90, every kernel then needs at
    most 80 KiB of shared memory (consumer GPUs have 99 KiB). The interpreter pays
    about a millisecond per operation whatever the tile size, so it gets large tiles,
    but still smaller than the tests' sequences (so the online softmax crosses blocks)
    and different between queries and keys (so a mix-up of BLOCK_M and BLOCK_N cannot
    pass unnoticed).
    """
    if _backend.triton_interpreted():
        return dict(fwd_m=128, fwd_n=64, kv_m=64, kv_n=128, q_m=128, q_n=64, warps=1, stages=1)
    if head_dim <= 64:
        cfg = dict(fwd_m=128, fwd_n=64, kv_m=64, kv_n=64, q_m=64, q_n=64, warps=4, stages=3)
    elif head_dim <= 128:
        cfg = dict(fwd_m=128, fwd_n=64, kv_m=32, kv_n=64, q_m=64, q_n=32, warps=8, stages=2)
    else:
        cfg = dict(fwd_m=64, fwd_n=32, kv_m=32, kv_n=32, q_m=32, q_n=32, warps=8, stages=1)
    if dtype == torch.float32:
        cfg = {name: max(16, size // 2) for name, size in cfg.items() if name.endswith(("_m", "_n"))}
        cfg.update(warps=4, stages=1)
    return cfg


def _flags(q: torch.Tensor, key_padding_mask: torch.Tensor | None) -> dict:
    D = q.shape[-1]
    return dict(
        D=D,
        HAS_MASK=key_padding_mask is not None,
        DOT_F32=_backend.triton_interpreted() and q.dtype != torch.float32,
        # tl.dot needs every tile side ≥ 16.
        BLOCK_D=max(16, triton.next_power_of_2(D)),
    )


def _mask_arg(q: torch.Tensor, key_padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    if key_padding_mask is None:
        return q, 0  # never read: HAS_MASK is off
    return key_padding_mask.view(torch.uint8), key_padding_mask.stride(0)


def flash_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d) v without the score matrix.

    Args:
        q: ``[B, H, N_q, d]``; k, v: ``[B, H, N_k, d]``; one dtype of float32, bfloat16,
            float16; any strides; ``d ≤ 256``.
        key_padding_mask: ``bool [B, N_k]`` with a unit last stride, True = ignore the key.

    Returns:
        ``(out, lse)``: contiguous ``[B, H, N_q, d]`` in ``q``'s dtype (zero for rows
        with no valid key), and ``float32 [B, H, N_q]``, the row's log-sum-exp of the
        scores in base 2 (``+inf`` for rows with no valid key), kept for the backward.
    """
    B, H, NQ, D = q.shape
    NK = k.shape[2]
    out = q.new_empty((B, H, NQ, D))
    lse = q.new_empty((B, H, NQ), dtype=torch.float32)
    if out.numel() == 0:
        return out, lse.fill_(float("inf"))
    cfg = _blocks(D, q.dtype)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(D)
    with on_device(q):
        _fwd_kernel[(triton.cdiv(NQ, cfg["fwd_m"]), H, B)](
            q,
            k,
            v,
            mask,
            out,
            lse,
            *q.stride(),
            *k.stride(),
            *v.stride(),
            smb,
            H,
            NQ,
            NK,
            sm_scale * LOG2E,
            **_flags(q, key_padding_mask),
            BLOCK_M=cfg["fwd_m"],
            BLOCK_N=cfg["fwd_n"],
            num_warps=cfg["warps"],
            num_stages=cfg["stages"],
        )
    return out, lse


def flash_attention_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`flash_attention_forward`.

    Args:
        grad: ``[B, H, N_q, d]``, the gradient of ``out``, any strides.
        q, k, v, key_padding_mask: as given to the forward.
        out, lse: the forward's results (contiguous).

    Returns:
        ``(dq, dk, dv)``, contiguous and in the dtypes of ``q``, ``k``, ``v``.
    """
    B, H, NQ, D = q.shape
    NK = k.shape[2]
    empty = B * H * NQ * NK * D == 0  # then nothing flows and every gradient is 0
    alloc = torch.zeros if empty else torch.empty
    dq, dk, dv = (alloc((B, H, t.shape[2], D), dtype=t.dtype, device=t.device) for t in (q, k, v))
    if empty:
        return dq, dk, dv
    cfg = _blocks(D, q.dtype)
    flags = _flags(q, key_padding_mask)
    mask, smb = _mask_arg(q, key_padding_mask)
    sm_scale = 1.0 / math.sqrt(D)
    delta = torch.empty_like(lse)
    strides = (*q.stride(), *k.stride(), *v.stride(), *grad.stride(), smb)
    launch = dict(num_warps=cfg["warps"], num_stages=cfg["stages"])
    with on_device(q):
        _bwd_delta_kernel[(triton.cdiv(NQ, cfg["q_m"]), H, B)](
            out,
            grad,
            delta,
            *grad.stride(),
            H,
            NQ,
            D=D,
            BLOCK_M=cfg["q_m"],
            BLOCK_D=flags["BLOCK_D"],
            **launch,
        )
        _bwd_dkdv_kernel[(triton.cdiv(NK, cfg["kv_n"]), H, B)](
            q,
            k,
            v,
            mask,
            grad,
            lse,
            delta,
            dk,
            dv,
            *strides,
            H,
            NQ,
            NK,
            sm_scale * LOG2E,
            sm_scale,
            **flags,
            BLOCK_M=cfg["kv_m"],
            BLOCK_N=cfg["kv_n"],
            **launch,
        )
        _bwd_dq_kernel[(triton.cdiv(NQ, cfg["q_m"]), H, B)](
            q,
            k,
            v,
            mask,
            grad,
            lse,
            delta,
            dq,
            *strides,
            H,
            NQ,
            NK,
            sm_scale * LOG2E,
            sm_scale,
            **flags,
            BLOCK_M=cfg["q_m"],
            BLOCK_N=cfg["q_n"],
            **launch,
        )
    return dq, dk, dv
