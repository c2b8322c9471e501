"""Scaled dot-product attention behind one door, ``fmae.ops.attention``.

Backends (``backend=``):

- ``"triton"``: the FlashAttention-2 kernels of :mod:`fmae.ops.triton.attention`, forward
  and backward (CUDA tensors; CPU tensors under ``TRITON_INTERPRET=1``).
- ``"xformers"``: ``xformers.ops.memory_efficient_attention`` (an optional extra; CUDA
  tensors only).
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``, any device.
- ``"sdpa_fp32"``: SDPA on float32 copies of bfloat16/float16 inputs, the result cast
  back: for CPUs without bf16 hardware, where torch's bf16 kernels run far slower
  than its float32 ones.
- ``"reference"``: plain softmax(q kᵀ / √d) v in float32, any device; the ground truth.

``"auto"`` picks SDPA, except on CUDA tensors with a key padding mask, where it picks
Triton, and for bfloat16/float16 on a CPU without AMX or AVX512-BF16, where it picks
``"sdpa_fp32"`` (``benchmarks/test_attention.py`` on a 2-core AVX2 EPYC, fwd+bwd of bf16
inputs at the model's shapes: 3.8–6.8× SDPA in bf16). Without a mask SDPA runs its
FlashAttention kernel, the fastest on current GPUs; with one SDPA falls back to its
memory-efficient kernel with a broadcast bias, while the Triton kernel reads the
``[B, N_k]`` mask as it is (this choice has not yet been timed on a GPU:
``benchmarks/test_attention.py`` measures it). On CPU, SDPA's
fused kernel is the fastest available until a C++ kernel is added.

Every backend returns 0 for rows whose keys are all padding, with zero gradients.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from fmae.ops import _backend
from fmae.runtime.device import cpu_has_fast_bf16

ATTENTION_BACKENDS = ("triton", "xformers", "sdpa", "sdpa_fp32", "reference")
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_XFORMERS = importlib.util.find_spec("xformers") is not None


def _clear_empty_rows(key_padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``bool [B, N_k]`` → (the mask with all-padding rows cleared, ``bool [B, 1, 1, 1]`` of them).

    A softmax over no key is 0/0; the backends that cannot skip such rows attend them
    to every key instead, and their output is then replaced by 0, which also stops
    their gradients.
    """
    empty = key_padding_mask.all(dim=1)
    return key_padding_mask & ~empty[:, None], empty[:, None, None, None]


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Plain softmax(q kᵀ / √d) v. ``[B, h, N_q, d]``, ``[B, h, N_k, d]`` ×2 → ``[B, h, N_q, d]``.

    Args:
        key_padding_mask: optional ``bool [B, N_k]``, True = ignore that key.
        compute_dtype: the dtype of every step; default float32 (float64 for float64
            inputs). The tests also run it in the inputs' own low precision to measure
            how far plain torch strays in that dtype.

    Returns:
        ``q``'s dtype; 0 in rows with no valid key.
    """
    dtype = compute_dtype or torch.promote_types(q.dtype, torch.float32)
    scores = torch.matmul(q.to(dtype), k.to(dtype).transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    empty = None
    if key_padding_mask is not None:
        key_padding_mask, empty = _clear_empty_rows(key_padding_mask)
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    out = torch.matmul(scores.softmax(dim=-1), v.to(dtype)).to(q.dtype)
    return out if empty is None else out.masked_fill(empty, 0)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    key_padding_mask, empty = _clear_empty_rows(key_padding_mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=~key_padding_mask[:, None, None, :])  # True = attend
    return out.masked_fill(empty, 0)


def _xformers(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    import xformers.ops as xops

    B, H, NQ, _ = q.shape
    bias, empty = None, None
    if key_padding_mask is not None:
        key_padding_mask, empty = _clear_empty_rows(key_padding_mask)
        NK = k.shape[2]
        # xformers needs the bias rows 8-aligned in memory: slice a padded allocation,
        # and broadcast it over heads and queries with stride 0.
        padded = q.new_zeros((B, 1, 1, -(-NK // 8) * 8))
        padded[..., :NK].masked_fill_(key_padding_mask[:, None, None, :], float("-inf"))
        bias = padded[..., :NK].expand(B, H, NQ, NK)
    # xformers' layout is [B, N, heads, d]; the transposes are views.
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias)
    out = out.transpose(1, 2)
    return out if empty is None else out.masked_fill(empty, 0)


@torch.library.custom_op("fmae::flash_attention", mutates_args=())
def _flash_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    from fmae.ops.triton.attention import flash_attention_forward

    return flash_attention_forward(q, k, v, key_padding_mask)


@_flash_op.register_fake
def _(q, k, v, key_padding_mask):
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("fmae::flash_attention_backward", mutates_args=())
def _flash_backward_op(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from fmae.ops.triton.attention import flash_attention_backward

    return flash_attention_backward(grad, q, k, v, out, lse, key_padding_mask)


@_flash_backward_op.register_fake
def _(grad, q, k, v, out, lse, key_padding_mask):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _flash_setup(ctx, inputs, output) -> None:
    q, k, v, key_padding_mask = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out, lse, key_padding_mask)


def _flash_backward(ctx, grad_out, _grad_lse):
    q, k, v, out, lse, key_padding_mask = ctx.saved_tensors
    return *_flash_backward_op(grad_out, q, k, v, out, lse, key_padding_mask), None


_flash_op.register_autograd(_flash_backward, setup_context=_flash_setup)


def _triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    return _flash_op(q, k, v, key_padding_mask)[0]


def _sdpa_fp32(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor:
    return _sdpa(q.float(), k.float(), v.float(), key_padding_mask).to(q.dtype)


_IMPLS = {
    "triton": _triton,
    "xformers": _xformers,
    "sdpa": _sdpa,
    "sdpa_fp32": _sdpa_fp32,
    "reference": attention_reference,
}
_HALF = (torch.bfloat16, torch.float16)


def _choose(backend: str | None, device: torch.device, has_mask: bool, dtype: torch.dtype = torch.float32) -> str:
    if backend is None or backend == "auto":
        if device.type == "cuda":
            return "triton" if has_mask and _backend.triton_importable() else "sdpa"
        return "sdpa_fp32" if dtype in _HALF and not cpu_has_fast_bf16() else "sdpa"
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {('auto',) + ATTENTION_BACKENDS}")
    if backend == "triton":
        _backend.choose("triton", device, supported=("triton",))  # raises with the reason it cannot run
    if backend == "xformers":
        if not _XFORMERS:
            raise RuntimeError(
                "backend 'xformers' unavailable: xformers is not installed (it needs a CUDA build of torch)"
            )
        if device.type != "cuda":
            raise RuntimeError(f"backend 'xformers' unavailable: it runs on CUDA tensors, got {device.type}")
    return backend


def _validate(q, k, v, key_padding_mask) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a [B, heads, N, head_dim] tensor, got {got}")
    if q.dtype not in FLOAT_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(
            f"q, k, v must share one dtype of float32, bfloat16, float16, float64; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape or k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(
            f"expected q [B, heads, N_q, d] and k, v [B, heads, N_k, d]; got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            got = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            raise TypeError(f"key_padding_mask must be a bool tensor, got {got}")
        if key_padding_mask.shape != (k.shape[0], k.shape[2]):
            raise ValueError(
                f"key_padding_mask must be [B, N_k] = {(k.shape[0], k.shape[2])}, got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device}, q on {q.device}")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    backend: str | None = "auto",
    *,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head attention softmax(q kᵀ / √d) v; differentiable.

    Args:
        q: ``[B, heads, N_q, head_dim]``.
        k, v: ``[B, heads, N_k, head_dim]``; ``N_k`` may differ from ``N_q``. One dtype
            for all three: float32, bfloat16, float16 (float64 on ``"sdpa"`` and
            ``"reference"``). Any strides.
        backend: ``"auto"`` (or ``None``), ``"triton"``, ``"xformers"``, ``"sdpa"``,
            ``"sdpa_fp32"`` or ``"reference"``; see the module docstring.
        key_padding_mask: optional ``bool [B, N_k]``, True = ignore that key (padding
            of variable-length sequences). Rows with no valid key give 0.

    Returns:
        ``[B, heads, N_q, head_dim]`` in ``q``'s dtype.
    """
    _validate(q, k, v, key_padding_mask)
    name = _choose(backend, q.device, key_padding_mask is not None, q.dtype)
    if name in ("triton", "xformers") and q.dtype == torch.float64:
        raise TypeError(f"backend {name!r} takes float32, bfloat16 or float16, got float64")
    if name == "triton":
        from fmae.ops.triton.attention import MAX_HEAD_DIM

        if q.shape[-1] > MAX_HEAD_DIM:
            raise ValueError(f"backend 'triton' takes head_dim ≤ {MAX_HEAD_DIM}, got {q.shape[-1]}")
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.contiguous()
    return _IMPLS[name](q, k, v, key_padding_mask)
