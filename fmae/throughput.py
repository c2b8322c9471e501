"""Timing the real pre-training step on random clips: what ``python -m fmae.bench step`` reports.

:func:`make_pretrain_step` builds one :meth:`fmae.pretraining.step.Pretrainer.step` on a fixed
batch of random clips (normal pixels) with blocky random region maps, so the facial
mask sorts real region ids; :func:`bench_step` runs it ``warmup`` times untimed, then
``steps`` times timed, and returns one flat dict (the JSON of the CLI):

- ``s_per_step``: the median step time (background load only ever adds time, the
  median ignores the odd slow step); ``s_per_step_mean`` and ``s_per_step_min`` beside
  it. On CUDA steps are timed with CUDA events recorded between them, so no host
  synchronisation is added to the step; on CPU with the wall clock.
- ``clips_per_s = batch_size / s_per_step``;
- ``tflops``: achieved matrix-product TFLOP/s, :func:`fmae.flops.step_flops` (the
  algorithm's count, discriminator included when λ > 0) over ``s_per_step``;
- ``peak_mem_mb``: the memory the steps need on top of the built model and inputs
  (optimiser state, gradients, activations): ``peak_mem_kind`` says how it was read —
  ``cuda_max_allocated_growth`` (``torch.cuda.max_memory_allocated`` during the timed
  steps minus the allocation after building), ``cpu_peak_rss_growth`` (Linux: the
  process's peak resident set during the timed steps, reset through
  ``/proc/self/clear_refs``, minus its resident set after building; allocator caching
  included, which ``tracemalloc`` cannot see) or ``cpu_maxrss_growth`` (elsewhere:
  ``getrusage``'s lifetime peak, which may include building). ``process_peak_mem_mb``
  is the whole process's peak (CUDA: all allocated tensors);
- ``first_step_s``, the first step's wall time, and with ``compile`` ``compile_s``, its
  time beyond ``s_per_step`` (``torch.compile`` compiles forward and backward in it);
- the settings, the compute ``dtype`` (``bf16``/``fp32``) and the machine: ``torch``,
  ``cuda``, ``gpu``, ``cpu``, ``cpu_threads``, ``cpu_fast_bf16``, ``python``.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from tqdm import tqdm

import fmae
from fmae.config import setting, check_choices
from fmae.device import DTYPES, cpu_has_fast_bf16, resolve_device, resolve_dtype
from fmae.face import NUM_REGIONS
from fmae.flops import step_flops
from fmae.masking import STRATEGIES
from fmae.model import MODEL_CONFIGS, FMAEConfig, get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer

MODEL_SIZES: tuple[str, ...] = tuple(name.removeprefix("fmae_vit_") for name in MODEL_CONFIGS)
REGION_BLOCK = 8
"""Side in pixels of the square blocks of one region id in the random region maps, like
a parsed face's parts at the 16-pixel tubelet scale."""


@dataclass
class StepBenchConfig:
    """One benchmark of the pre-training step: the model, the batch and how to time it."""

    model: str = setting("tiny", "model size: fmae_vit_<size>", MODEL_SIZES)
    img_size: int = setting(224, "side of the square clips in pixels (a multiple of 16)")
    frames: int = setting(16, "frames per clip (even: tubelets are 2 frames deep)")
    stride: int = setting(2, "temporal stride the clips stand for; the clips are random, so it changes no work and "
                         "is reported to label the result")
    ratio: float = setting(0.9, "masking ratio: fraction of the tokens hidden from the encoder")
    strategy: str = setting("facial", "masking strategy", STRATEGIES)
    adv_weight: float = setting(0.1, "λ of the adversarial loss; > 0 puts the discriminator's update in the step")
    batch_size: int = setting(2, "clips per step")
    dtype: str = setting("auto", "compute dtype: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES)
    compile: bool = setting(False, "torch.compile the model (the compile time is reported apart)")
    steps: int = setting(10, "timed steps")
    warmup: int = setting(2, "untimed steps before them (with --compile the first one compiles)")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    seed: int = setting(0, "seed of the weights, the clips and the masks")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        for name in ("img_size", "frames", "stride", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.adv_weight < 0:
            raise ValueError(f"warmup and adv_weight must be >= 0, got {self.warmup} and {self.adv_weight}")
        if self.compile and self.warmup < 1:
            raise ValueError("compile needs warmup >= 1: the first step compiles and must not be timed")

    @property
    def model_name(self) -> str:
        return f"fmae_vit_{self.model}"

    def model_config(self) -> FMAEConfig:
        """The model's shapes; ``ValueError`` when the tubelet does not divide the clip."""
        return get_config(self.model_name, img_size=self.img_size, num_frames=self.frames)


def random_batch(model_config: FMAEConfig, batch_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random clips and region maps of the model's sizes.

    Returns ``clip``, float32 ``[B, C, T, H, W]`` of standard normal pixels, and
    ``region_maps``, uint8 ``[B, T, H, W]``: each :data:`REGION_BLOCK`-pixel square of
    each frame one random region id in ``[0, NUM_REGIONS)``. ``generator`` is a CPU
    generator; the tensors are moved to ``device``.
    """
    c = model_config
    if c.img_size % REGION_BLOCK:
        raise ValueError(f"img_size {c.img_size} must be a multiple of {REGION_BLOCK}")
    clip = torch.randn(batch_size, c.in_chans, c.num_frames, c.img_size, c.img_size, generator=generator)
    side = c.img_size // REGION_BLOCK
    coarse = torch.randint(0, NUM_REGIONS, (batch_size, c.num_frames, side, side), generator=generator,
                           dtype=torch.uint8)
    maps = coarse.repeat_interleave(REGION_BLOCK, dim=2).repeat_interleave(REGION_BLOCK, dim=3)
    return clip.to(device), maps.to(device)


@dataclass
class PretrainStep:
    """A :class:`Pretrainer` and the fixed batch it trains on; calling it runs one step
    and returns :meth:`Pretrainer.step`'s stats (no host synchronisation)."""

    run: Pretrainer
    clip: torch.Tensor
    region_maps: torch.Tensor
    generator: torch.Generator

    def __call__(self) -> dict[str, torch.Tensor | float]:
        return self.run.step(self.clip, self.region_maps, self.generator)


def make_pretrain_step(model_config: FMAEConfig, config: PretrainConfig, device: torch.device | str = "cpu",
                       seed: int = 0) -> PretrainStep:
    """The real training step on one batch of ``config.batch_size`` random clips
    (:func:`random_batch`), weights and masks seeded by ``seed``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    run = Pretrainer(model_config, config, device=device)
    clip, maps = random_batch(model_config, config.batch_size, torch.Generator().manual_seed(seed), device)
    return PretrainStep(run, clip, maps, torch.Generator(device=device).manual_seed(seed))


class PeakMemory:
    """Memory the timed steps need on top of a baseline (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_allocated_growth" if device.type == "cuda" else "cpu_peak_rss_growth"
        self.base = 0

    def set_base(self) -> None:
        """Take the baseline: the memory in use now, in bytes."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _status_bytes("VmRSS") if sys.platform == "linux" else _maxrss_bytes()

    def reset_peak(self) -> None:
        """Start the window whose peak :meth:`read` reports."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM, the peak resident set, to the current one
        except OSError:
            self.kind = "cpu_maxrss_growth"

    def read(self) -> tuple[float, float]:
        """``(growth, process peak)`` in MiB."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _status_bytes("VmHWM") if self.kind == "cpu_peak_rss_growth" else _maxrss_bytes()
        return (peak - self.base) / 2**20, peak / 2**20


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """What the timings depend on besides the settings: torch, CUDA, the GPU, the CPU."""
    return {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": _cpu_name(), "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu_fast_bf16": cpu_has_fast_bf16(), "python": platform.python_version(), "fmae": fmae.__version__,
    }


def _wall_s(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _timed_steps(step: PretrainStep, n: int, device: torch.device, bar: tqdm) -> tuple[list[float], torch.Tensor]:
    """Seconds of each of ``n`` steps and the last step's loss."""
    if device.type != "cuda":
        times = []
        for _ in range(n):
            start = time.perf_counter()
            stats = step()
            times.append(time.perf_counter() - start)
            bar.update()
        return times, stats["loss"]
    events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
    events[0].record()
    for i in range(n):
        stats = step()
        events[i + 1].record()
        bar.update()
    torch.cuda.synchronize(device)
    return [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])], stats["loss"]


def bench_step(config: StepBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Time ``config.steps`` pre-training steps after ``config.warmup`` untimed ones.

    Returns the flat dict described in the module docstring. Raises ``ValueError`` for
    settings the model or the device cannot take (a tubelet that does not divide the
    clip, a ratio that masks no token, CUDA asked for where there is none).
    """
    try:
        device = resolve_device(config.device)
    except RuntimeError as err:
        raise ValueError(str(err)) from err
    dtype = resolve_dtype(config.dtype, device)
    model_config = config.model_config()
    pretrain = PretrainConfig(strategy=config.strategy, mask_ratio=config.ratio, adv_weight=config.adv_weight,
                              batch_size=config.batch_size, total_steps=config.warmup + config.steps,
                              autocast=dtype)
    step = make_pretrain_step(model_config, pretrain, device, config.seed)
    if config.compile:
        step.run.model.compile()
    memory = PeakMemory(device)
    memory.set_base()
    warm_times = []
    with tqdm(total=config.warmup + config.steps, desc=f"bench step {config.model_name}", unit="step",
              disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for _ in range(config.warmup):
            warm_times.append(_wall_s(step, device))
            bar.update()
        memory.reset_peak()
        times, loss = _timed_steps(step, config.steps, device, bar)
    peak_mb, process_peak_mb = memory.read()
    first_step_s = (warm_times or times)[0]

    s_per_step = statistics.median(times)
    flops = step_flops(model_config, config.batch_size, config.ratio, config.strategy, config.adv_weight).total
    settings = asdict(config)
    settings["model"] = config.model_name
    return {
        **settings,
        "dtype": "bf16" if dtype == torch.bfloat16 else "fp32", "dtype_requested": config.dtype,
        "device": str(device),
        "s_per_step": s_per_step, "s_per_step_mean": statistics.fmean(times), "s_per_step_min": min(times),
        "clips_per_s": config.batch_size / s_per_step,
        "flops_per_step": flops, "tflops": flops / s_per_step / 1e12,
        "peak_mem_mb": round(peak_mb, 1), "peak_mem_kind": memory.kind,
        "process_peak_mem_mb": round(process_peak_mb, 1),
        "first_step_s": first_step_s,
        "compile_s": max(0.0, first_step_s - s_per_step) if config.compile else None,
        "loss": float(loss),
        **environment(device),
    }
