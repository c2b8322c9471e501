"""Check 5, ``memory``: the largest batch whose pre-training step fits in the GPU's memory,
for ViT-B and ViT-L, without and with gradient checkpointing.

The full FMAE step (:meth:`fmae.pretraining.step.Pretrainer.step`: the facial mask at
``--step-ratio``, the discriminator at the default λ, fused AdamW, bf16 autocast) on
16×224² float32 clips already on the GPU, which count too: a batch fits when its clips,
the weights, their gradients, AdamW's state and the step's activations all do.

:func:`largest_batch` is the search, over any ``fits(batch) -> bool`` that is monotone
(a batch that fits means every smaller one does): doubling from ``start`` until a batch
does not fit (or ``cap`` does), then bisection between the largest batch that fitted and
the smallest that did not, until they are within ``resolution`` of the former. On the GPU,
:class:`StepFits` runs one step at that batch and calls a CUDA out-of-memory error "does
not fit"; AdamW's state is made first, by one step of one clip, so that every trial holds it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

from fmae.benchmarking.gpu.config import GpuCheckConfig
from fmae.benchmarking.gpu.runner import Context, Skip, error_line, free_memory, require_cuda

MEMORY_CASES: tuple[tuple[str, bool], ...] = (("base", False), ("base", True), ("large", False), ("large", True))
"""``(model size, gradient checkpointing)`` of each case, in the order they run."""
START, CAP, RESOLUTION = 8, 4096, 1 / 16
"""The search's first batch, the largest it tries, and how close its bracket closes."""
IMG_SIZE, FRAMES = 224, 16


class BatchSearch(NamedTuple):
    """What :func:`largest_batch` found."""

    largest: int
    """The largest batch that fitted; 0 when none did."""
    smallest_failing: int | None
    """The smallest batch that did not fit; ``None`` when every batch tried up to the cap fitted."""
    tried: list[tuple[int, bool]]
    """Each batch tried, in order, and whether it fitted."""
    complete: bool
    """Whether the search ended on its own (bracket closed or cap reached), not stopped early."""


def largest_batch(
    fits: Callable[[int], bool],
    start: int = START,
    cap: int = CAP,
    resolution: float = RESOLUTION,
    should_stop: Callable[[], bool] = lambda: False,
) -> BatchSearch:
    """The largest batch ``b <= cap`` with ``fits(b)``, to within ``resolution · b``.

    ``fits`` must be monotone. Batches double from ``start`` while they fit (a batch that
    does not fit at ``start`` halves instead), then the bracket ``[largest fitting, smallest
    failing)`` is bisected until its width is at most ``max(1, resolution · largest)``.
    ``should_stop`` is asked before each trial; when it says so the search ends with the
    bracket it has (``complete`` False).
    """
    if not 1 <= start <= cap or resolution < 0:
        raise ValueError(f"need 1 <= start <= cap and resolution >= 0, got {start}, {cap}, {resolution}")
    lo, hi = 0, None
    tried: list[tuple[int, bool]] = []
    batch = start
    while True:
        if should_stop():
            return BatchSearch(lo, hi, tried, False)
        ok = fits(batch)
        tried.append((batch, ok))
        if ok:
            lo = batch
        else:
            hi = batch
        if hi is None:
            if batch == cap:
                return BatchSearch(lo, None, tried, True)
            batch = min(2 * batch, cap)
            continue
        if hi - lo <= max(1, math.floor(resolution * lo)):
            return BatchSearch(lo, hi, tried, True)
        batch = (lo + hi) // 2


class StepFits:
    """``fits(batch)``: whether one pre-training step of ``batch`` clips runs on ``device``
    without running out of memory; each step that fits leaves its peak memory and its
    seconds in :attr:`peak_gib` and :attr:`seconds` (by batch)."""

    def __init__(
        self,
        model: str,
        grad_checkpointing: bool,
        ratio: float,
        device: Any,
        dtype: str = "bf16",
        img_size: int = IMG_SIZE,
        frames: int = FRAMES,
    ) -> None:
        import torch

        from fmae.benchmarking.step import random_batch
        from fmae.model import get_config
        from fmae.pretraining.step import PretrainConfig, Pretrainer

        self.device = torch.device(device)
        self.config = get_config(f"fmae_vit_{model}", img_size=img_size, num_frames=frames)
        torch.manual_seed(0)
        self.run = Pretrainer(
            self.config,
            PretrainConfig(
                strategy="facial",
                mask_ratio=ratio,
                autocast="bfloat16" if dtype == "bf16" else None,
                grad_checkpointing=grad_checkpointing,
            ),
            device=self.device,
        )
        # Eight distinct clips, repeated on the device to any batch: the memory a step needs
        # does not depend on what the clips show, and 30 GB of host-made noise would take minutes.
        self.clips, self.maps = random_batch(self.config, 8, torch.Generator().manual_seed(0), self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(0)
        self.peak_gib: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        if not self(1):  # AdamW's state, made in the first step, is there in every trial after it
            raise Skip(f"not even one clip's step fits on {self.device}")

    def __call__(self, batch: int) -> bool:
        import torch

        from fmae.benchmarking.timing import timed_call

        repeat = -(-batch // self.clips.shape[0])
        fitted = True
        try:
            clips = self.clips.repeat(repeat, 1, 1, 1, 1)[:batch]
            maps = self.maps.repeat(repeat, 1, 1, 1)[:batch]
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            seconds, _ = timed_call(lambda: self.run.step(clips, maps, self.generator), self.device)
            if self.device.type == "cuda":
                self.peak_gib[batch] = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.seconds[batch] = seconds
        except torch.cuda.OutOfMemoryError:
            fitted = False
        # Out of the except block: the error's traceback, which holds the step's tensors, is gone.
        clips = maps = None
        free_memory()
        return fitted


def _measure_case(ctx: Context, model: str, checkpointing: bool, s: dict[str, Any], stop_at: float) -> dict:
    """One case's search with the settings ``s``, or why it failed or was skipped; it stops when
    ``ctx.left()`` falls to ``stop_at``."""
    row: dict[str, Any] = {"model": f"fmae_vit_{model}", "grad_checkpointing": checkpointing}
    try:
        fits = StepFits(model, checkpointing, s["ratio"], s["device"], s["dtype"], s["img_size"], s["frames"])
        found = largest_batch(fits, start=min(START, s["cap"]), cap=s["cap"], should_stop=lambda: ctx.left() <= stop_at)
        row.update(
            status="ok" if found.complete else "skipped",
            largest_batch=found.largest,
            smallest_failing=found.smallest_failing,
            tried=found.tried,
            peak_gib=fits.peak_gib.get(found.largest),
            s_per_step=fits.seconds.get(found.largest),
        )
        if not found.complete:
            row["reason"] = "out of time: the batch found so far"
    except Skip as skip:
        row.update(status="skipped", reason=str(skip))
    except Exception as err:  # noqa: BLE001
        row.update(status="failed", error=error_line(err))
        ctx.failures.append(f"{row['model']} checkpointing {checkpointing}: {row['error']}")
    return row


def measure_memory(
    ctx: Context,
    device: Any,
    ratio: float = 0.9,
    cases: tuple[tuple[str, bool], ...] = MEMORY_CASES,
    cap: int = CAP,
    dtype: str = "bf16",
    img_size: int = IMG_SIZE,
    frames: int = FRAMES,
) -> None:
    """Each case's largest batch into ``ctx.details["cases"]``, each case given an even share
    of the time left, and the gain of checkpointing (largest batch with over without) per model."""
    import torch

    s: dict[str, Any] = dict(img_size=img_size, frames=frames, ratio=ratio, dtype=dtype, cap=cap, device=str(device))
    if torch.device(device).type == "cuda":
        s["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 2)
    ctx.details["settings"] = s
    rows: list[dict] = ctx.details.setdefault("cases", [])
    for i, (model, checkpointing) in enumerate(cases):
        stop_at = ctx.left() * (len(cases) - i - 1) / (len(cases) - i)
        rows.append(_measure_case(ctx, model, checkpointing, s, stop_at))
        free_memory()
        ctx.save()
    largest = {(r["model"], r["grad_checkpointing"]): r.get("largest_batch") for r in rows}
    for r in rows:
        without = largest.get((r["model"], False))
        if r["grad_checkpointing"] and r.get("largest_batch") and without:
            r["batch_gain"] = round(r["largest_batch"] / without, 2)


def plan(config: GpuCheckConfig, root: Path | None) -> list[str]:
    """What :func:`check` would run, for the dry run."""
    cases = ", ".join(f"ViT-{m[0].upper()} {'with' if c else 'without'} checkpointing" for m, c in MEMORY_CASES)
    return [
        f"the largest batch of {FRAMES}x{IMG_SIZE}^2 clips whose full step (facial mask at ratio {config.step_ratio}, "
        f"discriminator, bf16) fits: {cases}",
        f"doubling from {START} to at most {CAP}, then bisection to within {RESOLUTION:.0%}; one step per trial",
    ]


def check(ctx: Context) -> None:
    require_cuda()
    measure_memory(ctx, "cuda", ctx.config.step_ratio)
