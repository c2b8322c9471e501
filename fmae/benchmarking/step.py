"""Timing the real pre-training step on random clips: what ``python -m fmae.bench step`` reports.

:func:`make_pretrain_step` builds one :meth:`fmae.pretraining.step.Pretrainer.step` on a fixed
batch of random clips (normal pixels) with blocky random region maps, so the facial
mask sorts real region ids; :func:`bench_step` runs it ``warmup`` times untimed, then
``steps`` times timed, and returns one flat dict (the JSON of the CLI):

- ``s_per_step``: the median step time (background load only ever adds time, the
  median ignores the odd slow step); ``s_per_step_mean`` and ``s_per_step_min`` beside
  it. On CUDA steps are timed with CUDA events recorded between them, so no host
  synchronisation is added to the step; on CPU with the wall clock
  (:func:`fmae.benchmarking.timing.timed_calls`).
- ``clips_per_s = batch_size / s_per_step``;
- ``tflops``: achieved matrix-product TFLOP/s, :func:`fmae.model.flops.step_flops` (the
  algorithm's count, discriminator included when λ > 0, decoder masking counted) over
  ``s_per_step``; ``fraction_of_peak``: that over ``matmul_peak_tflops``, the machine's
  matrix-product rate in the step's compute dtype (``dtype``: bf16 on a CPU with AMX or
  AVX512-BF16, where it is several times the fp32 rate, and on GPUs that have it), measured in
  the same process: the fastest of ``PEAK_ROUNDS`` square ``PEAK_SIZE²`` products
  (:func:`fmae.benchmarking.timing.matmul_peak`), sampled before and after the timed steps, the better kept (on a
  shared machine, its quietest moment) — the yardstick of the benchmarks'
  ``fraction_of_peak`` too (``benchmarks/conftest.py``);
- ``peak_mem_mb``: the memory the steps need on top of the built model and inputs
  (optimiser state, gradients, activations): ``peak_mem_kind`` says how it was read —
  ``cuda_max_allocated_growth`` (``torch.cuda.max_memory_allocated`` during the timed
  steps minus the allocation after building), ``cpu_peak_rss_growth`` (Linux: the
  process's peak resident set during the timed steps, reset through
  ``/proc/self/clear_refs``, minus its resident set after building; allocator caching
  included, which ``tracemalloc`` cannot see) or ``cpu_maxrss_growth`` (elsewhere:
  ``getrusage``'s lifetime peak, which may include building). ``process_peak_mem_mb``
  is the whole process's peak (CUDA: all allocated tensors). On Linux, glibc keeps freed
  blocks below its mmap threshold (which grows to 32 MiB) in its heap, where they count
  as resident; ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment hands them back, so the
  figure follows the live tensors (``benchmarks/results/memory.md``: it moves ViT-B's
  checkpointed step from 2190 to 1501 MiB);
- ``first_step_s``, the first step's wall time, and with ``compile`` ``compile_s``, its
  time beyond ``s_per_step`` (``torch.compile`` compiles forward and backward in it);
- with ``compare="hf"``: HF ``transformers``' ``VideoMAEForPreTraining`` step
  (:func:`hf_videomae_step`: random mask at the same ratio, every masked cube
  reconstructed, no discriminator, fused AdamW, the same compute dtype, eager or
  compiled alike — HF's best eager setting on each CPU: fp32 on AVX2, bf16 autocast on
  AMX) timed in the same run: both are warmed up, then their timed steps alternate (in
  ABBA order, so that a change of the machine's load hits both alike), each step timed
  alone. ``hf_s_per_step`` (median), ``hf_s_per_step_mean``/``_min``, ``hf_clips_per_s``,
  ``hf_flops_per_step`` (:func:`fmae.model.flops.step_flops` of the work HF does: random mask,
  keep 1, λ = 0; its *useful* FLOPs, since HF embeds every cube), ``hf_tflops``,
  ``hf_fraction_of_peak``, ``hf_peak_mem_mb``, ``hf_first_step_s``, ``hf_loss``,
  ``speedup_vs_hf = hf_s_per_step / s_per_step`` (medians) and ``speedup_vs_hf_min``
  (fastest steps: the steadier estimate when other jobs load the machine in bursts). Peak memory is then read
  around each
  step alone (the window must exclude the other's steps), as the growth over the memory
  in use just before that step (``peak_mem_kind`` ``cuda_step_allocated_growth`` or
  ``cpu_step_rss_growth``): what one step allocates beyond what it starts with — the
  optimiser state that the warm-up made and the previous step's gradients, which each step
  frees as it begins, so that its new gradients take their place: about its activations;
- with ``accum_steps`` > 1 each step runs its batch as that many micro-batches, and with
  ``grad_checkpointing`` the encoder's and decoder's blocks are recomputed in the backward
  pass (HF's step alike with ``compare="hf"``): ``peak_mem_mb`` then shows what they save,
  ``s_per_step`` what they cost;
- the settings, the compute ``dtype`` (``bf16``/``fp32``) and the machine: ``torch``,
  ``cuda``, ``gpu``, ``cpu``, ``cpu_threads``, ``cpu_fast_bf16``, ``omp_wait_policy``,
  ``python``. On a CPU shared with other jobs, run with ``OMP_WAIT_POLICY=PASSIVE``:
  OpenMP's default spin-waiting threads lose their time slices to the other jobs, and a
  ViT-B step that takes 1.4 s then takes 5–15 s, at random (measured with a load
  average of 4–8 on 2 cores).
"""

from __future__ import annotations

import re
import resource
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from tqdm import tqdm

from fmae.benchmarking.timing import abba, matmul_peak, timed_call, timed_calls
from fmae.face import NUM_REGIONS
from fmae.masking import DECODER_STRATEGIES, STRATEGIES
from fmae.model import MODEL_CONFIGS, FMAEConfig, get_config
from fmae.model.flops import step_flops
from fmae.pretraining.step import PretrainConfig, Pretrainer
from fmae.runtime.config import check_choices, setting
from fmae.runtime.device import DTYPES, autocast, resolve_device, resolve_dtype
from fmae.runtime.machine import describe

MODEL_SIZES: tuple[str, ...] = tuple(name.removeprefix("fmae_vit_") for name in MODEL_CONFIGS)
REGION_BLOCK = 8
"""Side in pixels of the square blocks of one region id in the random region maps, like
a parsed face's parts at the 16-pixel tubelet scale."""
COMPARE: tuple[str, ...] = ("none", "hf")
"""What ``bench step`` may time beside FMAE's step in the same run (``--compare``)."""


@dataclass
class StepBenchConfig:
    """One benchmark of the pre-training step: the model, the batch and how to time it."""

    model: str = setting("tiny", "model size: fmae_vit_<size>", MODEL_SIZES)
    img_size: int = setting(224, "side of the square clips in pixels (a multiple of 16)")
    frames: int = setting(16, "frames per clip (even: tubelets are 2 frames deep)")
    stride: int = setting(
        2,
        "temporal stride the clips stand for; the clips are random, so it changes no work and "
        "is reported to label the result",
    )
    ratio: float = setting(0.9, "masking ratio: fraction of the tokens hidden from the encoder")
    strategy: str = setting("facial", "masking strategy", STRATEGIES)
    decoder_keep: float = setting(
        1.0, "decoder masking: fraction of the masked tokens the decoder reconstructs, in (0, 1]"
    )
    decoder_strategy: str = setting(
        "running_cell", "which masked tokens the decoder reconstructs when decoder_keep < 1", DECODER_STRATEGIES
    )
    adv_weight: float = setting(0.1, "λ of the adversarial loss; > 0 puts the discriminator's update in the step")
    batch_size: int = setting(2, "clips per step")
    accum_steps: int = setting(
        1, "gradient accumulation: run each step's batch as this many micro-batches (HF's step too, with --compare hf)"
    )
    grad_checkpointing: bool = setting(
        False,
        "recompute each encoder and decoder block in the backward pass (HF's step too, with --compare hf: "
        "its activation checkpointing)",
    )
    dtype: str = setting("auto", "compute dtype: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES)
    compile: bool = setting(False, "torch.compile the model (the compile time is reported apart)")
    steps: int = setting(10, "timed steps")
    warmup: int = setting(2, "untimed steps before them (with --compile the first one compiles)")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    seed: int = setting(0, "seed of the weights, the clips and the masks")
    compare: str = setting(
        "none",
        "hf: also time HF transformers' VideoMAEForPreTraining step (random mask, same "
        "ratio, dtype and compile setting, fused AdamW) in the same run, alternating with FMAE's "
        "steps, and report the speed-up (needs `pip install transformers`)",
        COMPARE,
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if not 0.0 < self.decoder_keep <= 1.0:
            raise ValueError(f"decoder_keep must be in (0, 1], got {self.decoder_keep}")
        for name in ("img_size", "frames", "stride", "batch_size", "steps", "accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.accum_steps:
            raise ValueError(
                f"batch_size {self.batch_size} must split into accum_steps {self.accum_steps} micro-batches"
            )
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


def random_batch(
    model_config: FMAEConfig, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
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
    coarse = torch.randint(
        0, NUM_REGIONS, (batch_size, c.num_frames, side, side), generator=generator, dtype=torch.uint8
    )
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


def make_pretrain_step(
    model_config: FMAEConfig, config: PretrainConfig, device: torch.device | str = "cpu", seed: int = 0
) -> PretrainStep:
    """The real training step on one batch of ``config.batch_size`` random clips
    (:func:`random_batch`), weights and masks seeded by ``seed``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    run = Pretrainer(model_config, config, device=device)
    clip, maps = random_batch(model_config, config.batch_size, torch.Generator().manual_seed(seed), device)
    return PretrainStep(run, clip, maps, torch.Generator(device=device).manual_seed(seed))


@dataclass
class HFStep:
    """HF ``transformers``' ``VideoMAEForPreTraining`` training step on a fixed batch;
    calling it runs one step (forward under autocast, backward, AdamW) and returns the
    detached loss (no host synchronisation). With ``accum_steps = k`` the batch runs as
    ``k`` micro-batches, each loss over ``k`` (every clip has the same number of masked
    cubes, so the mean losses add up to the batch's), one AdamW step on the summed
    gradients. Built by :func:`hf_videomae_step`."""

    model: Any
    """The ``VideoMAEForPreTraining`` (compiled in place when asked)."""
    optimizer: torch.optim.Optimizer
    pixels: torch.Tensor
    """``[B, T, C, H, W]``: HF's layout."""
    mask: torch.Tensor
    """``bool [B, N]``, ``round(ratio·N)`` random tokens per clip."""
    dtype: torch.dtype
    device: torch.device
    accum_steps: int = 1

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for pixels, mask in zip(self.pixels.chunk(self.accum_steps), self.mask.chunk(self.accum_steps)):
            with autocast(self.device, self.dtype):
                loss = self.model(pixels, bool_masked_pos=mask).loss / self.accum_steps
            loss.backward()
            losses.append(loss.detach())
        self.optimizer.step()
        return torch.stack(losses).sum()


def hf_videomae_step(
    model_config: FMAEConfig,
    ratio: float,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    compiled: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    accum_steps: int = 1,
    grad_checkpointing: bool = False,
) -> HFStep:
    """HF's ``VideoMAEForPreTraining`` at FMAE's sizes, the baseline of the step benchmarks.

    The same shapes as ``model_config`` (clip size, tubelet, encoder and decoder widths,
    depths, heads, MLP ratio, ``norm_pix_loss``), randomly initialised; a random mask of
    ``round(ratio·N)`` tokens per clip (HF reconstructs every masked cube: no decoder
    masking); AdamW with ``fused=True`` (lr 1e-4, betas 0.9/0.95) over every parameter;
    fp32 weights with ``dtype`` autocast (float32: none); ``compiled``: the model is
    ``torch.compile``-d in place (the first call compiles). HF's best eager setting on a
    CPU is this with ``dtype`` the machine's fast one (:func:`fmae.runtime.device.resolve_dtype`):
    fp32 on AVX2, bf16 on AMX. Inputs and weights are seeded by ``seed``. ``accum_steps``:
    see :class:`HFStep`; ``grad_checkpointing``: HF's activation checkpointing of every
    encoder and decoder layer (``activation_checkpointing_enable``, called
    ``gradient_checkpointing_enable`` before transformers 5), non-reentrant as FMAE's.

    Raises ``ImportError`` with the command to run when ``transformers`` is missing.
    """
    try:
        import transformers
    except ImportError as err:
        raise ImportError("the HF comparison needs Hugging Face transformers: pip install transformers") from err
    c, device = model_config, torch.device(device)
    hf_config = transformers.VideoMAEConfig(
        image_size=c.img_size,
        num_frames=c.num_frames,
        tubelet_size=c.tubelet[0],
        patch_size=c.tubelet[1],
        num_channels=c.in_chans,
        hidden_size=c.embed_dim,
        num_hidden_layers=c.depth,
        num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio),
        decoder_hidden_size=c.decoder_embed_dim,
        decoder_num_hidden_layers=c.decoder_depth,
        decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_embed_dim * c.mlp_ratio),
        norm_pix_loss=c.norm_pix_loss,
    )
    torch.manual_seed(seed)
    model = transformers.VideoMAEForPreTraining(hf_config).to(device).train()
    if grad_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
    if compiled:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=device.type in ("cpu", "cuda"))
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, c.num_frames, c.in_chans, c.img_size, c.img_size, generator=g)
    n, k = c.num_tokens, round(ratio * c.num_tokens)
    mask = torch.rand(batch_size, n, generator=g).argsort(dim=1) < k
    return HFStep(model, optimizer, pixels.to(device), mask.to(device), dtype, device, accum_steps)


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
        # Pages freed between the base reading and the peak reset leave the peak below the base: no growth.
        return max(0.0, peak - self.base) / 2**20, peak / 2**20


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


@dataclass
class _Timed:
    """One implementation's timed steps: seconds, last loss, peak memory growth and process peak (MiB)."""

    times: list[float]
    loss: torch.Tensor
    peak_mb: float
    process_peak_mb: float


def _alternating(
    steps: dict[str, Callable[[], torch.Tensor]], n: int, device: torch.device, memory: PeakMemory, bar: tqdm
) -> dict[str, _Timed]:
    """``n`` timed steps of each of ``steps``, alternating in ABBA order (:func:`fmae.benchmarking.timing.abba`),
    each timed alone (wall clock, synchronised on CUDA) with its own peak-memory window."""
    out = {name: _Timed([], torch.zeros(()), 0.0, 0.0) for name in steps}
    for name in abba(list(steps), n):
        memory.set_base()
        memory.reset_peak()
        seconds, loss = timed_call(steps[name], device)
        peak, process = memory.read()
        timed = out[name]
        timed.times.append(seconds)
        timed.loss, timed.peak_mb = loss, max(timed.peak_mb, peak)
        timed.process_peak_mb = max(timed.process_peak_mb, process)
        bar.update()
    return out


def _summary(timed: _Timed, batch_size: int, flops: int, peak: float) -> dict[str, Any]:
    s_per_step = statistics.median(timed.times)
    return {
        "s_per_step": s_per_step,
        "s_per_step_mean": statistics.fmean(timed.times),
        "s_per_step_min": min(timed.times),
        "clips_per_s": batch_size / s_per_step,
        "flops_per_step": flops,
        "tflops": flops / s_per_step / 1e12,
        "fraction_of_peak": flops / s_per_step / peak,
        "peak_mem_mb": round(timed.peak_mb, 1),
        "process_peak_mem_mb": round(timed.process_peak_mb, 1),
        "loss": float(timed.loss),
    }


def _build_steps(
    config: StepBenchConfig, model_config: FMAEConfig, device: torch.device, dtype: torch.dtype
) -> tuple[PretrainStep, dict[str, Callable[[], torch.Tensor]]]:
    """FMAE's step (compiled when asked) and, with ``compare == "hf"``, HF's: each a call that returns the loss."""
    pretrain = PretrainConfig(
        strategy=config.strategy,
        mask_ratio=config.ratio,
        adv_weight=config.adv_weight,
        batch_size=config.batch_size,
        total_steps=config.warmup + config.steps,
        autocast=dtype,
        decoder_keep=config.decoder_keep,
        decoder_strategy=config.decoder_strategy,
        accum_steps=config.accum_steps,
        grad_checkpointing=config.grad_checkpointing,
    )
    step = make_pretrain_step(model_config, pretrain, device, config.seed)
    if config.compile:
        step.run.model.compile()
    steps: dict[str, Callable[[], torch.Tensor]] = {"fmae": lambda: step()["loss"]}
    if config.compare == "hf":
        steps["hf"] = hf_videomae_step(
            model_config,
            config.ratio,
            config.batch_size,
            dtype,
            config.compile,
            device,
            config.seed,
            accum_steps=config.accum_steps,
            grad_checkpointing=config.grad_checkpointing,
        )
    return step, steps


def _run_steps(
    config: StepBenchConfig,
    steps: dict[str, Callable[[], torch.Tensor]],
    device: torch.device,
    memory: PeakMemory,
    progress: bool,
) -> tuple[dict[str, float], dict[str, _Timed]]:
    """The warm-up (the first step's seconds of each) and the timed steps: FMAE's alone back to
    back, or alternating with HF's."""
    first: dict[str, float] = {}
    with tqdm(
        total=(config.warmup + config.steps) * len(steps),
        desc=f"bench step {config.model_name}",
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for _ in range(config.warmup):
            for name, fn in steps.items():
                first.setdefault(name, timed_call(fn, device)[0])
                bar.update()
        if len(steps) > 1:
            return first, _alternating(steps, config.steps, device, memory, bar)
        memory.reset_peak()
        times, loss = timed_calls(steps["fmae"], config.steps, device, bar.update)
        return first, {"fmae": _Timed(times, loss, *memory.read())}


def _memory_kind(memory: PeakMemory, alternating: bool) -> str:
    """How the peak memory was read: around all the timed steps, or around each one alone when alternating."""
    if not alternating:
        return memory.kind
    per_step = {"cpu_peak_rss_growth": "cpu_step_rss_growth", "cuda_max_allocated_growth": "cuda_step_allocated_growth"}
    return per_step.get(memory.kind, memory.kind)


def _hf_summary(
    config: StepBenchConfig, model_config: FMAEConfig, timed: _Timed, first_s: float, peak: float, fmae: dict
) -> dict[str, Any]:
    """HF's numbers (``hf_`` keys) and FMAE's speed-up over them."""
    flops = step_flops(model_config, config.batch_size, config.ratio, "random", 0.0).total
    hf = _summary(timed, config.batch_size, flops, peak)
    out = {f"hf_{k}": v for k, v in hf.items()}
    out["hf_first_step_s"] = first_s
    out["speedup_vs_hf"] = hf["s_per_step"] / fmae["s_per_step"]
    out["speedup_vs_hf_min"] = hf["s_per_step_min"] / fmae["s_per_step_min"]
    return out


def bench_step(config: StepBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Time ``config.steps`` pre-training steps after ``config.warmup`` untimed ones
    (and as many of HF's, alternating with them, with ``config.compare == "hf"``).

    Returns the flat dict described in the module docstring. Raises ``ValueError`` for
    settings the model or the device cannot take (a tubelet that does not divide the
    clip, a ratio that masks no token, CUDA asked for where there is none), and
    ``ImportError`` when the comparison needs ``transformers`` and it is missing.
    """
    try:
        device = resolve_device(config.device)
    except RuntimeError as err:
        raise ValueError(str(err)) from err
    dtype = resolve_dtype(config.dtype, device)
    model_config = config.model_config()
    step, steps = _build_steps(config, model_config, device, dtype)
    peak = matmul_peak(dtype, device)
    memory = PeakMemory(device)
    memory.set_base()
    first, timed = _run_steps(config, steps, device, memory, progress)
    peak = max(peak, matmul_peak(dtype, device))

    flops = step_flops(
        model_config, config.batch_size, config.ratio, config.strategy, config.adv_weight, config.decoder_keep
    ).total
    result = _summary(timed["fmae"], config.batch_size, flops, peak)
    first_step_s = first.get("fmae", timed["fmae"].times[0])
    settings = asdict(config)
    settings["model"] = config.model_name
    out = {
        **settings,
        "dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
        "dtype_requested": config.dtype,
        "device": str(device),
        **result,
        "peak_mem_kind": _memory_kind(memory, len(steps) > 1),
        "num_masked": step.run.num_masked,
        "decoder_targets": step.run.num_targets,
        "matmul_peak_tflops": peak / 1e12,
        "first_step_s": first_step_s,
        "compile_s": max(0.0, first_step_s - result["s_per_step"]) if config.compile else None,
        **describe(device),
    }
    if "hf" in timed:
        hf_first = first.get("hf", timed["hf"].times[0])
        out.update(_hf_summary(config, model_config, timed["hf"], hf_first, peak, result))
    return out
