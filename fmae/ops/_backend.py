"""The one place where an op's implementation is chosen.

Every op in :mod:`fmae.ops` takes ``backend``: ``"auto"`` (or ``None``) picks the
fastest implementation that applies to the input's device; a name forces one and
fails with a clear error when it cannot run there.

- ``"cuda"``: the CUDA extension ``fmae._C_cuda`` (CUDA tensors; built when a CUDA
  toolkit was found at install time).
- ``"triton"``: Triton kernels (CUDA tensors; CPU tensors only under
  ``TRITON_INTERPRET=1``, which is how the tests run them on a machine without a GPU).
- ``"cpp"``: the C++ CPU extension ``fmae._C`` (CPU tensors).
- ``"reference"``: plain torch, any device; the ground truth in the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import Literal, Sequence

import torch

Backend = Literal["auto", "cuda", "triton", "cpp", "reference"]
BACKENDS: tuple[str, ...] = ("cuda", "triton", "cpp", "reference")


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# Looked up once at import, so that choosing a backend is plain attribute access that
# torch.compile can trace.
_CPP = _import("fmae._C")
_CUDA = _import("fmae._C_cuda")
_TRITON = importlib.util.find_spec("triton") is not None


def cpp_extension() -> ModuleType | None:
    """The C++ CPU extension ``fmae._C``, or ``None`` when it is not built."""
    return _CPP


def cuda_extension() -> ModuleType | None:
    """The CUDA extension ``fmae._C_cuda``, or ``None`` when it was not built or cannot load."""
    return _CUDA


def triton_importable() -> bool:
    return _TRITON


def triton_interpreted() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _runs(backend: str, device: torch.device) -> str | None:
    """``None`` when ``backend`` can run on ``device``, else the reason it cannot."""
    if backend == "reference":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the C++ backend runs on CPU tensors, got {device.type}"
        return None if cpp_extension() is not None else "fmae._C is not built (reinstall with `pip install .`)"
    if backend == "cuda":
        if device.type != "cuda":
            return f"the CUDA backend runs on CUDA tensors, got {device.type}"
        return None if cuda_extension() is not None else "fmae._C_cuda was not built (no CUDA toolkit at install time)"
    if backend == "triton":
        if not triton_importable():
            return "triton is not installed"
        if device.type == "cuda" or (device.type == "cpu" and triton_interpreted()):
            return None
        return f"Triton runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {device.type}"
    return f"unknown backend {backend!r}; choose one of {('auto',) + BACKENDS}"


def choose(backend: str | None, device: torch.device, supported: Sequence[str] = BACKENDS) -> str:
    """Resolve ``backend`` for an op whose implementations are ``supported``.

    ``"auto"`` prefers CUDA ▸ Triton on CUDA tensors and C++ on CPU tensors, falling
    back to the reference. A forced backend that cannot run raises ``RuntimeError``.
    """
    if backend is None or backend == "auto":
        order = ("cuda", "triton") if device.type == "cuda" else ("cpp",)
        for name in order:
            if name in supported and _runs(name, device) is None:
                return name
        return "reference"
    if backend not in supported:
        raise ValueError(f"backend {backend!r} is not one of {('auto',) + tuple(supported)}")
    why = _runs(backend, device)
    if why is not None:
        raise RuntimeError(f"backend {backend!r} unavailable: {why}")
    return backend


def available(device: torch.device | str, supported: Sequence[str] = BACKENDS) -> list[str]:
    """The backends among ``supported`` that can run on ``device`` here."""
    device = torch.device(device)
    return [b for b in supported if _runs(b, device) is None]
