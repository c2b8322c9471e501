"""Which device and compute dtype a run uses."""

from __future__ import annotations

import contextlib

import torch

DTYPES: tuple[str, ...] = ("auto", "bf16", "fp32")
"""The compute-dtype choices of every command (:func:`resolve_dtype`)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: ``"auto"`` is bf16 on GPUs that support it and on CPUs with
    AMX/AVX512-BF16 (several times faster there than fp32), fp32 elsewhere."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if name != "auto":
        raise ValueError(f"dtype must be auto, bf16 or fp32, got {name!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; no context at all for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
