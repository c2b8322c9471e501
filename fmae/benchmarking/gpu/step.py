"""Check 3, ``step``: the ViT-B pre-training step in bf16 (16×224², ``--step-batch-size``
clips, ``--step-ratio``), HF ``transformers``' ``VideoMAEForPreTraining``
(:func:`fmae.benchmarking.step.hf_videomae_step`, as the benchmarks build it) against FMAE's
step (:func:`fmae.benchmarking.step.bench_step`: the same work with a random mask and no
discriminator, and the full facial-mask + adversarial step) at decoder keep 1 and 0.5."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any, NamedTuple

from fmae.benchmarking.gpu.config import GpuCheckConfig
from fmae.benchmarking.gpu.runner import Context, Skip, error_line, free_memory, require_cuda
from fmae.benchmarking.timing import time_calls, timed_call

_STEP_KEYS = (
    "s_per_step",
    "s_per_step_min",
    "clips_per_s",
    "tflops",
    "flops_per_step",
    "peak_mem_mb",
    "first_step_s",
    "loss",
    "dtype",
    "batch_size",
    "ratio",
)


class StepShape(NamedTuple):
    """What every case of the check shares: the model, the clips, the batch and how to time it."""

    device: Any
    model: str = "base"
    img_size: int = 224
    frames: int = 16
    batch_size: int = 8
    ratio: float = 0.9
    steps: int = 10
    warmup: int = 3
    dtype: str = "bf16"


def has_decoder_keep() -> bool:
    """Whether :class:`fmae.benchmarking.step.StepBenchConfig` takes ``decoder_keep`` (decoder masking)."""
    from fmae.benchmarking.step import StepBenchConfig

    return "decoder_keep" in {f.name for f in dataclasses.fields(StepBenchConfig)}


def step_cases(keep_available: bool) -> list[dict[str, Any]]:
    """HF's step, then FMAE's with the same work (random mask, no discriminator) and the full
    FMAE step (facial mask, λ = 0.1), each at decoder keep 1 and 0.5; the 0.5 cases carry
    ``skip`` where decoder masking is not available."""
    cases: list[dict[str, Any]] = [
        {"impl": "hf_videomae", "strategy": "random", "adv_weight": 0.0, "decoder_keep": 1.0}
    ]
    for impl, strategy, adv in (("fmae_random_mae", "random", 0.0), ("fmae_facial_adv", "facial", 0.1)):
        for keep in (1.0, 0.5):
            case: dict[str, Any] = {"impl": impl, "strategy": strategy, "adv_weight": adv, "decoder_keep": keep}
            if keep != 1.0 and not keep_available:
                case["skip"] = "decoder_keep not available"
            cases.append(case)
    return cases


def _fmae_step(case: dict, s: StepShape, keep_available: bool) -> dict:
    from fmae.benchmarking.step import StepBenchConfig, bench_step

    kw: dict[str, Any] = dict(
        model=s.model,
        img_size=s.img_size,
        frames=s.frames,
        ratio=s.ratio,
        strategy=case["strategy"],
        adv_weight=case["adv_weight"],
        batch_size=s.batch_size,
        dtype=s.dtype,
        steps=s.steps,
        warmup=s.warmup,
        device=str(s.device),
    )
    if keep_available:
        kw["decoder_keep"] = case["decoder_keep"]
    result = bench_step(StepBenchConfig(**kw), progress=False)
    return {key: result.get(key) for key in _STEP_KEYS}


def _hf_step(s: StepShape) -> dict:
    """HF's step as the benchmarks build it (:func:`fmae.benchmarking.step.hf_videomae_step`: random
    mask, fused AdamW), timed here."""
    import torch

    from fmae.benchmarking.step import PeakMemory, hf_videomae_step
    from fmae.model import get_config
    from fmae.model.flops import step_flops

    if importlib.util.find_spec("transformers") is None:
        raise Skip("transformers is not installed")
    device = torch.device(s.device)
    config = get_config(f"fmae_vit_{s.model}", img_size=s.img_size, num_frames=s.frames)
    compute = torch.bfloat16 if s.dtype == "bf16" else torch.float32
    step = hf_videomae_step(config, s.ratio, s.batch_size, compute, compiled=False, device=device)
    memory = PeakMemory(device)
    memory.set_base()
    first, _ = timed_call(step, device)
    memory.reset_peak()
    timing = time_calls(step, device, warmup=max(s.warmup - 1, 0), iters=s.steps, target_s=None)
    peak, _ = memory.read()
    seconds = timing["ms"] / 1e3
    flops = step_flops(config, s.batch_size, s.ratio, "random", 0.0).total
    return {
        "s_per_step": seconds,
        "s_per_step_min": timing["ms_min"] / 1e3,
        "clips_per_s": s.batch_size / seconds,
        "tflops": flops / seconds / 1e12,
        "flops_per_step": flops,
        "peak_mem_mb": round(peak, 1),
        "first_step_s": first,
        "loss": float(timing["last"]),
        "dtype": s.dtype,
        "batch_size": s.batch_size,
        "ratio": s.ratio,
    }


def _measure_case(ctx: Context, row: dict, s: StepShape, keep_available: bool) -> dict:
    """The numbers of the case ``row``, or why it failed or was skipped."""
    try:
        got = _hf_step(s) if row["impl"] == "hf_videomae" else _fmae_step(row, s, keep_available)
        row.update(status="ok", **got)
        if not math.isfinite(float(got.get("loss", float("nan")))):
            row["status"] = "failed"
            row["error"] = f"non-finite loss {got.get('loss')}"
    except Skip as skip:
        row.update(status="skipped", reason=str(skip))
    except Exception as err:  # noqa: BLE001
        row.update(status="failed", error=error_line(err))
    if row["status"] == "failed":
        ctx.failures.append(f"{row['impl']} keep {row['decoder_keep']:g}: {row['error']}")
    return row


def measure_steps(
    ctx: Context,
    device: Any,
    model: str = "base",
    img_size: int = 224,
    frames: int = 16,
    batch_size: int = 8,
    ratio: float = 0.9,
    steps: int = 10,
    warmup: int = 3,
    dtype: str = "bf16",
) -> None:
    """Each of :func:`step_cases` into ``ctx.details["cases"]``, with FMAE's speed-up over HF's step."""
    shape = StepShape(device, model, img_size, frames, batch_size, ratio, steps, warmup, dtype)
    keep_available = has_decoder_keep()
    ctx.details["decoder_keep_available"] = keep_available
    settings = shape._asdict()
    settings.pop("device")
    ctx.details["settings"] = {**settings, "model": f"fmae_vit_{model}", "device": str(device)}
    rows: list[dict] = ctx.details.setdefault("cases", [])
    for case in step_cases(keep_available):
        row = {k: v for k, v in case.items() if k != "skip"}
        if "skip" in case or ctx.left() < 15.0:
            rows.append({**row, "status": "skipped", "reason": case.get("skip", "out of time")})
            continue
        rows.append(_measure_case(ctx, row, shape, keep_available))
        free_memory()
        ctx.save()
    hf = next((r["s_per_step"] for r in rows if r["impl"] == "hf_videomae" and r.get("s_per_step")), None)
    for r in rows:
        if hf and r.get("s_per_step") and r["impl"] != "hf_videomae":
            r["speedup_vs_hf"] = round(hf / r["s_per_step"], 3)


def plan(config: GpuCheckConfig, root: Path | None) -> list[str]:
    """What :func:`check` would run, for the dry run."""
    cases = ", ".join(f"{c['impl']} keep {c['decoder_keep']:g}" for c in step_cases(True))
    return [
        f"ViT-B, bf16, 16x224^2, B={config.step_batch_size}, ratio {config.step_ratio}, "
        f"{config.step_steps} timed steps after 3: {cases}",
        "HF transformers.VideoMAEForPreTraining from fmae.benchmarking.step.hf_videomae_step; FMAE through "
        "fmae.benchmarking.step.bench_step (decoder keep 0.5 only where StepBenchConfig has decoder_keep)",
    ]


def check(ctx: Context) -> None:
    require_cuda()
    c = ctx.config
    measure_steps(ctx, "cuda", "base", 224, 16, c.step_batch_size, c.step_ratio, c.step_steps, 3, "bf16")
