"""Scaled dot-product attention behind one door, ``fmae.ops.attention``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ATTENTION_BACKENDS = ("sdpa", "reference")


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain softmax(q kᵀ / √d) v, computed in float32. ``[B, h, N, d]`` → ``[B, h, N, d]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale
    return torch.matmul(scores.softmax(dim=-1), v.float()).to(q.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None = "auto") -> torch.Tensor:
    """Multi-head attention without a mask.

    Args:
        q, k, v: ``[B, heads, N, head_dim]`` (``k``/``v`` may have another ``N``), one
            floating dtype.
        backend: ``"auto"`` (torch SDPA), ``"sdpa"`` or ``"reference"``.

    Returns:
        ``[B, heads, N_q, head_dim]`` in ``q``'s dtype.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B, heads, N, head_dim], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if backend in (None, "auto", "sdpa"):
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "reference":
        return attention_reference(q, k, v)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {('auto',) + ATTENTION_BACKENDS}")
