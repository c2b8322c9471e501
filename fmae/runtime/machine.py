"""This machine, as results record it: the CPU's name, its load, and the versions that timings
depend on. Every figure FMAE writes names its machine through here."""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import torch

from fmae.runtime.device import cpu_has_fast_bf16


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages as ``"0.4/0.9/1.2"`` (``"?"`` where unknown)."""
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def describe(device: torch.device | None = None) -> dict[str, Any]:
    """What timings depend on besides the settings: torch, CUDA, the GPU of ``device``, the CPU."""
    from fmae import __version__

    device = device or torch.device("cpu")
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "python": platform.python_version(),
        "fmae": __version__,
    }
