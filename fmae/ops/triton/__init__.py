"""Triton kernels of :mod:`fmae.ops`, one file per op (kernel and launcher).

Imported only when the ``"triton"`` backend is chosen, so ``fmae.ops`` works without
Triton. The kernels run on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import contextlib

import torch


def on_device(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s GPU current for a launch: Triton launches on the current device."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()
