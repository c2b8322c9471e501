"""This machine, as results record it: the CPU's name, its load, and the versions that timings
depend on. Every figure FMAE writes names its machine through here."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
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


def load_averages() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where unknown)."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages as ``"0.4/0.9/1.2"`` (``"?"`` where unknown)."""
    averages = load_averages()
    return "?" if averages is None else "/".join(f"{x:.1f}" for x in averages)


def describe(device: torch.device | None = None) -> dict[str, Any]:
    """What timings depend on besides the settings: torch, CUDA, the GPU of ``device``, the CPU."""
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
        "fmae": package_version("fmae"),
    }


def package_version(dist: str) -> str | None:
    """The installed version of the distribution ``dist``, ``None`` where it is not installed
    or its metadata cannot be read."""
    try:
        return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001 - broken metadata raises anything; a report still gets written
        return None


def driver_version() -> str | None:
    """The NVIDIA driver's version (``nvidia-smi``), ``None`` without it."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_properties(index: int = 0) -> dict[str, Any]:
    """CUDA device ``index``: its count, compute capability, memory, multiprocessors and bf16
    support (``{}`` where CUDA sees no GPU)."""
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(index)
    return {
        "gpu_count": torch.cuda.device_count(),
        "gpu_capability": "sm_{}{}".format(*torch.cuda.get_device_capability(index)),
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "gpu_multiprocessors": props.multi_processor_count,
        "bf16_supported": torch.cuda.is_bf16_supported(),
    }
