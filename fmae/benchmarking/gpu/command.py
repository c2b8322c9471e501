"""The command ``python -m fmae.bench gpu``: :func:`run` runs the selected checks and writes
the report; without CUDA, or with ``--dry-run``, :func:`dry_run_text` says what it would run.
:func:`environment` is the report's machine: :func:`fmae.runtime.machine.describe` and the GPU's
details, the driver, Triton, the extensions and the packages the checks use."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from fmae.benchmarking.gpu import attention, dali, memory, step, tests
from fmae.benchmarking.gpu.config import CHECKS, JSON_NAME, MD_NAME, REPORT_VERSION, GpuCheckConfig
from fmae.benchmarking.gpu.report import summarize, summary_text, write_report
from fmae.benchmarking.gpu.runner import cuda_status, run_checks, source_root
from fmae.runtime import machine

_PLANS: dict[str, Callable[[GpuCheckConfig, Path | None], list[str]]] = {
    "tests": tests.plan,
    "attention": attention.plan,
    "step": step.plan,
    "dali": dali.plan,
    "memory": memory.plan,
}
_PACKAGES = (
    ("transformers", "transformers"),
    ("xformers", "xformers"),
    ("dali", "nvidia-dali-cuda130"),
    ("dali_cuda120", "nvidia-dali-cuda120"),
    ("av", "av"),
    ("numpy", "numpy"),
    ("pytest", "pytest"),
)
"""``(name in the report, distribution)`` of the packages whose versions the report gives."""


def command_line(config: GpuCheckConfig) -> str:
    """``python -m fmae.bench gpu`` with ``--out`` and the settings that differ from the defaults."""
    parts = ["python -m fmae.bench gpu"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name != "dry_run" and (f.name == "out" or value != f.default):
            parts.append(f"--{f.name.replace('_', '-')} {value}")
    return " ".join(parts)


def plan_lines(config: GpuCheckConfig) -> list[str]:
    """What each selected check would run, for the dry run."""
    root = source_root()
    lines = []
    for i, name in enumerate(config.selected(), 1):
        c = CHECKS[name]
        lines.append(f"  {i}. {name}: {c.title} (needs about {c.estimate_s:.0f} s, at most {c.limit_s:.0f} s)")
        lines += [f"       {line}" for line in _PLANS[name](config, root)]
    return lines


def dry_run_text(config: GpuCheckConfig, no_cuda: str | None = None) -> str:
    """The dry run's message: why nothing ran, and what would."""
    head = f"No CUDA here: {no_cuda}. Nothing was run." if no_cuda is not None else "Dry run: nothing was run."
    return "\n".join(
        [
            head,
            f"On a CUDA machine `{command_line(config)}` runs these checks, each in its own process with a time "
            f"limit, within a {config.budget:.0f} s budget (a check that no longer fits is skipped, with the reason):",
            *plan_lines(config),
            f"and writes {Path(config.out) / JSON_NAME} and {MD_NAME} (each check's status ok/failed/skipped and its "
            "numbers, the GPU, torch/CUDA/Triton versions, the wall time).",
        ]
    )


def _safely(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        return f"unknown ({type(err).__name__}: {err})"


def _extension_built(which: str) -> Any:
    return _safely(lambda: getattr(importlib.import_module("fmae.ops._backend"), which)() is not None)


def environment() -> dict[str, Any]:
    """The machine and the versions the results depend on; each field on its own, so one
    that cannot be read says so and the rest are still there."""
    env: dict[str, Any] = {
        "platform": platform.platform(),
        "hostname": platform.node(),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
    }
    try:
        import torch

        env.update(machine.describe(torch.device("cuda", 0) if torch.cuda.is_available() else None))
        env["cudnn"] = _safely(lambda: torch.backends.cudnn.version())
        env.update(machine.gpu_properties(0))
    except Exception as err:  # noqa: BLE001
        env["torch"] = f"unknown ({err})"
    env["driver"] = _safely(machine.driver_version)
    env["triton"] = machine.package_version("triton")
    env["cuda_extension_built"] = _extension_built("cuda_extension")
    env["cpp_extension_built"] = _extension_built("cpp_extension")
    env["packages"] = {name: machine.package_version(dist) for name, dist in _PACKAGES}
    return env


def _new_report(config: GpuCheckConfig) -> dict[str, Any]:
    return {
        "fmae_gpu_check": REPORT_VERSION,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(config),
        "budget_s": config.budget,
        "settings": dataclasses.asdict(config),
        "environment": environment(),
        "checks": [],
        "summary": {},
        "wall_s": 0.0,
    }


def run(config: GpuCheckConfig) -> int:
    """The command: run the selected checks and write the report; 1 if any check failed.

    Without CUDA, or with ``dry_run``, print what would run and return 0.
    """
    available, why = cuda_status()
    if config.dry_run or not available:
        print(dry_run_text(config, None if available else why))
        return 0
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = _new_report(config)
    print(
        f"GPU check on {report['environment'].get('gpu')}: {', '.join(config.selected())} within "
        f"{config.budget:.0f} s; results in {out_dir}",
        file=sys.stderr,
        flush=True,
    )

    def write(results: list[dict]) -> None:
        report["checks"] = list(results)
        report["summary"] = summarize(results)
        report["wall_s"] = round(time.monotonic() - started, 1)
        try:
            write_report(out_dir, report)
        except Exception as err:  # noqa: BLE001 - the checks go on; the next write may succeed
            print(f"warning: could not write the report to {out_dir}: {err!r}", file=sys.stderr, flush=True)

    write([])
    scratch = Path(tempfile.mkdtemp(prefix="fmae-gpu-check-"))
    try:
        results = run_checks([CHECKS[n] for n in config.selected()], config, config.budget, scratch, on_result=write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write(results)
    print(summary_text(report))
    print(f"wrote {out_dir / JSON_NAME} and {out_dir / MD_NAME}")
    return 1 if report["summary"].get("failed") else 0
