"""One pre-training step (forward, backward, optimiser) in clips/s, FMAE against HF
``transformers``' ``VideoMAEForPreTraining`` at the same shapes and masking ratio, in
the same run (HF is each group's baseline), across the masking ratios 0.25–0.95 and the
decoder keeps 1, 0.5 and 0.25 (decoder masking, VideoMAE V2's dual masking: FMAE's
decoder reconstructs that fraction of the masked cubes, picked by the default
``running_cell`` strategy; HF always reconstructs all of them, so it runs at keep 1 and
is the baseline of every keep).

Clips are 16×224×224, B=2, in the compute dtype FMAE picks for this machine
(:func:`fmae.runtime.device.resolve_dtype`), eager. With ``--full`` every case also runs in each
``setting`` of :data:`SETTINGS`: fp32 and bf16 (autocast; fp32 weights and optimiser
state), eager and ``torch.compile``-d (the warm-up rounds compile), so HF's best setting
here can be set beside FMAE's; bf16 is skipped on a CPU without bf16 hardware (AMX,
AVX512-BF16), where it runs at about 1 % of fp32. Each ``setting`` is its own group,
whose baseline is HF in that setting. Four variants:

- ``hf_videomae``: HF's step, random mask, fused AdamW (the baseline;
  :func:`fmae.benchmarking.step.hf_videomae_step`);
- ``fmae_random_mae``: random mask, no adversarial loss — the same work as HF's step;
- ``fmae_facial_mae``: the facial mask (its region histogram and sort included);
- ``fmae_facial_adv``: the full FMAE step, with the discriminator update (λ = 0.1).

Without ``--full`` only the tiny model runs, only ``hf_videomae``, ``fmae_random_mae``
and ``fmae_facial_adv``, and of the decoder keeps below 1 only 0.5 at ratio 0.9. Under
``--benchmark-disable`` (a smoke run: nothing is timed) each step runs once on 8×64² clips.

``extra_info`` of each (from the fastest round, ``t``):

- ``clips_per_s`` = B/t; ``tokens_per_s`` = B·N/t (tokens of the clips, N = 1568);
  ``visible_tokens_per_s`` = B·V/t (V visible tokens per clip, what the encoder sees);
  ``decoder_keep`` and ``decoder_tokens`` (V + K, the decoder's tokens per clip);
- ``flops``: :func:`fmae.model.flops.step_flops` — the algorithm's matrix-product FLOPs, the
  same count for HF (whose implementation does more: it embeds all N cubes), decoder
  masking counted for FMAE;
  ``flops_per_s`` = flops/t and, in the JSON, ``fraction_of_peak``: of the best
  square-matmul FLOP/s of the run in the compute dtype (``benchmarks/conftest.py``);
- FMAE variants, eager: ``encoder_share``, the median over the timed rounds of the encoder's
  forward + backward time over the step's, clocked inside the real step
  (:class:`EncoderClock`), and ``encoder_forward_ms``/``encoder_backward_ms`` (fastest);
- at ratio 0.9 (and 0.5 with ``--full``), keeps 1 and 0.5: ``step_peak_mb``, the memory two steps need on top of the
  built model and inputs, in a fresh process (:func:`step_memory`): on CUDA
  ``torch.cuda.max_memory_allocated`` minus the allocation before the steps; on CPU
  the process's peak resident set during the steps minus its resident set before
  them — what the OS had to give, allocator caching included (``tracemalloc`` does
  not see torch's CPU tensors) — and ``process_peak_mb``, the peak resident set of
  the whole process during the steps (Python, torch and the model included).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch

from fmae.benchmarking.step import PeakMemory, hf_videomae_step, make_pretrain_step
from fmae.benchmarking.timing import synchronize
from fmae.masking import num_decoder_targets, num_masked
from fmae.model import FMAE, FMAEConfig, get_config
from fmae.model.flops import step_flops
from fmae.pretraining.step import PretrainConfig
from fmae.runtime.device import cpu_has_fast_bf16, resolve_device, resolve_dtype

B, IMG, FRAMES = 2, 224, 16
SMOKE_IMG, SMOKE_FRAMES = 64, 8
RATIOS = [0.25, 0.5, 0.75, 0.9, 0.95]
KEEPS = [1.0, 0.5, 0.25]
"""Decoder keeps (decoder masking) of FMAE's steps; HF runs at 1 only."""
QUICK_KEEP_RATIO, QUICK_KEEPS = 0.9, (1.0, 0.5)
"""Without ``--full``, keeps below 1 run at this ratio only, and only these."""
DEVICE = resolve_device("auto")
DTYPE = resolve_dtype("auto", DEVICE)


class Bench(NamedTuple):
    step: Callable[[], torch.Tensor]
    model: FMAE | None
    """The FMAE model the step trains (``None`` for HF)."""


class Setting(NamedTuple):
    dtype: torch.dtype
    compiled: bool


SETTINGS = {
    f"{name}-{mode}": Setting(dtype, mode == "compiled")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    for mode in ("eager", "compiled")
}
DEFAULT_SETTING = f"{'bf16' if DTYPE == torch.bfloat16 else 'fp32'}-eager"


def _hf_step(c: FMAEConfig, ratio: float, setting: Setting, keep: float = 1.0) -> Bench:
    pytest.importorskip("transformers", reason="HF comparison needs `pip install transformers`")
    assert keep == 1.0, "HF reconstructs every masked cube: no decoder masking"
    return Bench(hf_videomae_step(c, ratio, B, setting.dtype, setting.compiled, DEVICE), None)


def _fmae_step(
    c: FMAEConfig, ratio: float, setting: Setting, strategy: str, adv_weight: float, keep: float = 1.0
) -> Bench:
    step = make_pretrain_step(
        c,
        PretrainConfig(
            strategy=strategy,
            mask_ratio=ratio,
            adv_weight=adv_weight,
            batch_size=B,
            autocast=setting.dtype,
            decoder_keep=keep,
        ),
        DEVICE,
    )
    if setting.compiled:
        step.run.model.compile()
    return Bench(lambda: step()["loss"], step.run.model)


IMPLS = {  # name: (builder(config, ratio, setting, keep), masking strategy, λ)
    "hf_videomae": (_hf_step, "random", 0.0),
    "fmae_random_mae": (lambda c, ratio, s, keep: _fmae_step(c, ratio, s, "random", 0.0, keep), "random", 0.0),
    "fmae_facial_mae": (lambda c, ratio, s, keep: _fmae_step(c, ratio, s, "facial", 0.0, keep), "facial", 0.0),
    "fmae_facial_adv": (lambda c, ratio, s, keep: _fmae_step(c, ratio, s, "facial", 0.1, keep), "facial", 0.1),
}
QUICK_IMPLS = ("hf_videomae", "fmae_random_mae", "fmae_facial_adv")


def _now() -> float:
    synchronize(DEVICE)
    return time.perf_counter()


class EncoderClock:
    """Wall time of the encoder's forward and backward inside each real step of ``model``.

    Forward: around :meth:`FMAE.forward_encoder`. Backward: from the moment the gradient
    of the encoder's output is ready to the moment the patch embedding's weight
    gradient is accumulated — the end of the backward pass, since the embedding's input
    (the clip's cubes) needs no gradient. ``times`` gets one ``[forward_s, backward_s]``
    per step. On CUDA each reading synchronises the device, which costs the step a
    little.
    """

    def __init__(self, model: FMAE) -> None:
        self.times: list[list[float]] = []
        self._backward_start = 0.0
        inner = model.forward_encoder

        def timed(cubes: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
            start = _now()
            latent = inner(cubes, visible)
            self.times.append([_now() - start, 0.0])
            if latent.requires_grad:
                latent.register_hook(self._start_backward)
            return latent

        model.forward_encoder = timed
        model.patch_embed.weight.register_post_accumulate_grad_hook(self._end_backward)

    def _start_backward(self, grad: torch.Tensor) -> None:
        self._backward_start = _now()

    def _end_backward(self, param: torch.Tensor) -> None:
        self.times[-1][1] = _now() - self._backward_start


def step_memory(model_name: str, ratio: float, impl: str, keep: float = 1.0) -> dict[str, float]:
    """Memory of two steps of ``impl`` at decoder keep ``keep`` in this process (see the
    module docstring), in MiB.

    On CPU (Linux) the process's peak resident set is reset (``/proc/self/clear_refs``)
    once the model and inputs are built, then read (``VmHWM``) after the steps; the
    steps' figure is that peak minus the resident set before them. Two steps, so that
    the optimiser's state, made in the first, is there in the second.
    """
    config = get_config(model_name, img_size=IMG, num_frames=FRAMES)
    step = IMPLS[impl][0](config, ratio, SETTINGS[DEFAULT_SETTING], keep).step
    memory = PeakMemory(DEVICE)
    memory.set_base()
    memory.reset_peak()
    for _ in range(2):
        step()
    growth, peak = memory.read()
    return {"step_peak_mb": growth, "process_peak_mb": peak}


def _step_memory_in_fresh_process(model_name: str, ratio: float, impl: str, keep: float) -> dict[str, float]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_pretrain_step as t; "
        f"print(json.dumps(t.step_memory({model_name!r}, {ratio!r}, {impl!r}, {keep!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the memory probe failed:\n{out.stderr[-3000:]}")
    return {k: None if v is None else round(v, 1) for k, v in json.loads(out.stdout.splitlines()[-1]).items()}


def _cases():
    for setting in SETTINGS:
        for model_name in ("fmae_vit_tiny", "fmae_vit_base"):
            for ratio in RATIOS:
                for impl in IMPLS:
                    for keep in KEEPS if impl != "hf_videomae" else [1.0]:
                        heavy = (
                            model_name == "fmae_vit_base"
                            or impl not in QUICK_IMPLS
                            or setting != DEFAULT_SETTING
                            or keep not in QUICK_KEEPS
                            or (keep != 1.0 and ratio != QUICK_KEEP_RATIO)
                        )
                        yield pytest.param(
                            model_name,
                            ratio,
                            impl,
                            keep,
                            setting,
                            marks=[pytest.mark.full] if heavy else [],
                            id=f"{model_name}-{ratio}-{impl}-keep{keep}-{setting}",
                        )


@pytest.mark.parametrize("model_name,ratio,impl,keep,setting", list(_cases()))
def test_pretrain_step(request, benchmark, measure, matmul_peak, model_name, ratio, impl, keep, setting):
    chosen = SETTINGS[setting]
    if chosen.dtype == torch.bfloat16 and DEVICE.type == "cpu" and not cpu_has_fast_bf16():
        pytest.skip(
            "bf16 on a CPU without AMX or AVX512-BF16 runs at about 1 % of fp32: nothing to learn from timing it"
        )
    # Every keep in HF's group: HF (keep 1) is the baseline of each.
    benchmark.group = f"pretrain step {model_name} B={B} {FRAMES}x{IMG}^2 ratio={ratio} {setting} {DEVICE.type}"
    build, strategy, adv_weight = IMPLS[impl]
    img, frames = (SMOKE_IMG, SMOKE_FRAMES) if benchmark.disabled else (IMG, FRAMES)
    config = get_config(model_name, img_size=img, num_frames=frames)
    bench = build(config, ratio, chosen, keep)
    # The clock's timers and hooks would break a compiled graph apart: eager steps only.
    clock = EncoderClock(bench.model) if bench.model is not None and not chosen.compiled else None
    label = impl if impl == "hf_videomae" else f"{impl} keep {keep:g}"
    loss = measure(bench.step, impl=label, baseline=impl == "hf_videomae", rounds=3)
    assert torch.isfinite(loss)
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.min
    m = num_masked(strategy, config.grid, ratio)
    visible = config.num_tokens - m
    flops = step_flops(config, B, ratio, strategy, adv_weight, keep).total
    info = dict(
        clips_per_s=round(B / t, 3),
        tokens_per_s=round(B * config.num_tokens / t, 1),
        visible_tokens_per_s=round(B * visible / t, 1),
        flops=flops,
        flops_per_s=round(flops / t),
        decoder_keep=keep,
        decoder_tokens=visible + num_decoder_targets(m, keep),
        matmul_peak=matmul_peak.sample(chosen.dtype, DEVICE),
    )
    if clock is not None:
        timed = clock.times[-len(benchmark.stats.stats.data) :]
        info["encoder_share"] = round(
            statistics.median((f + b) / total for (f, b), total in zip(timed, benchmark.stats.stats.data)), 3
        )
        info["encoder_forward_ms"] = round(1e3 * min(f for f, _ in timed), 2)
        info["encoder_backward_ms"] = round(1e3 * min(b for _, b in timed), 2)
    if (
        setting == DEFAULT_SETTING
        and keep in (1.0, 0.5)
        and (ratio == 0.9 or (ratio == 0.5 and request.config.getoption("--full")))
    ):
        info.update(_step_memory_in_fresh_process(model_name, ratio, impl, keep))
    benchmark.extra_info.update(info)
