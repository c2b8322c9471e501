"""``python -m fmae.bench step``: how fast the pre-training step runs on this machine.

The real step (:meth:`fmae.pretraining.step.Pretrainer.step`, discriminator update included when
λ > 0, decoder masking with ``--decoder-keep``) on random clips and region maps, timed as
described in :mod:`fmae.benchmarking.step`, with its share of the matmul peak in its dtype; with
``--compare hf``, HF ``transformers``' ``VideoMAEForPreTraining`` step timed in the same run
(alternating with FMAE's) and the speed-up. A small table, or with ``--json`` one JSON object
on stdout. Progress goes to stderr.

``python -m fmae.bench gpu --out DIR``: every check that needs a GPU in one command
(:mod:`fmae.benchmarking.gpu`); without CUDA, or with ``--dry-run``, it lists what it would run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fmae.benchmarking.gpu import GpuCheckConfig
from fmae.benchmarking.gpu import run as run_gpu_check
from fmae.benchmarking.step import StepBenchConfig, bench_step
from fmae.runtime.cli import add_command_args, run_parsed

_EXAMPLES = """examples:
  python -m fmae.bench step                                     # tiny model, 16x224^2, B=2, ratio 0.9
  python -m fmae.bench step --model base --ratio 0.9 --batch-size 2 --dtype bf16 --json
  python -m fmae.bench step --model base --compile --warmup 3 --steps 20
  python -m fmae.bench step --adv-weight 0 --strategy random    # plain masked-autoencoder step
  python -m fmae.bench step --model base --strategy random --adv-weight 0 --decoder-keep 0.5 --compare hf
  OMP_WAIT_POLICY=PASSIVE python -m fmae.bench step --model base --compare hf   # on a CPU other jobs share
  python -m fmae.bench step --model tiny --img-size 112 --device cpu --dtype fp32
  python -m fmae.bench step --model base --batch-size 8 --grad-checkpointing --compare hf --json   # peak memory
  python -m fmae.bench step --model base --batch-size 8 --accum-steps 4     # 4 micro-batches of 2, one update
"""


def _step_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "step",
        help="time the pre-training step",
        description="Time the real FMAE pre-training step (masking, encoder, decoder, losses, backward, fused AdamW; "
        "the discriminator's update too when --adv-weight > 0; decoder masking with --decoder-keep < 1) on random "
        "clips and region maps. Reports s/step (median), clips/s, achieved TFLOP/s (matrix products, fmae.model.flops) "
        "and its fraction of the square-matmul peak in the same dtype (measured in the same process), peak memory "
        "of the step, the compute dtype and the torch/CPU/GPU it ran on. --compare hf times HF transformers' "
        "VideoMAEForPreTraining step (same shapes, ratio, dtype, fused AdamW) in the same run, alternating with "
        "FMAE's steps, and prints the ratio.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_command_args(parser, StepBenchConfig)
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", default=None, help="run the model eagerly (the default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def _step(config: StepBenchConfig, args: argparse.Namespace) -> int:
    result = bench_step(config, progress=not args.no_progress)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


_GPU_EXAMPLES = """examples:
  python -m fmae.bench gpu --out runs/gpu_check                # all five checks, 480 s budget
  python -m fmae.bench gpu --out runs/gpu_memory --checks memory   # the largest batch that fits, alone
  python -m fmae.bench gpu --dry-run                           # list what would run
  python -m fmae.bench gpu --out runs/gpu_check --checks attention,step --budget 300
"""


def _gpu_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gpu",
        help="every GPU check in one command",
        description="On a CUDA machine, run every check that needs a GPU, each in its own process with a time limit, "
        "within one budget: the GPU tests (pytest tests/ops and the CUDA-gated tests), the attention backends "
        "(triton, sdpa, xformers, reference) at ViT-B's shapes, the ViT-B pre-training step against HF VideoMAE, "
        "DALI's GPU decoding against the PyTorch loader, and the largest ViT-B and ViT-L batch whose step fits, "
        "without and with gradient checkpointing. Writes gpu_check.json and gpu_check.md to --out. "
        "Builds nothing: install the package (with its CUDA extension) first. Without CUDA, or with --dry-run, it "
        "says so and lists what it would run. Exit status 1 when a check failed.",
        epilog=_GPU_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_command_args(parser, GpuCheckConfig)
    return parser


def _gpu(config: GpuCheckConfig, args: argparse.Namespace) -> int:
    return run_gpu_check(config)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary of one :func:`fmae.benchmarking.step.bench_step` result."""
    r = result
    mode = "compiled" if r["compile"] else "eager"
    keep = r.get("decoder_keep", 1.0)
    decoder = (
        "all masked tokens"
        if keep == 1
        else (f"keep {keep:g}: {r['decoder_targets']} of {r['num_masked']} masked tokens ({r['decoder_strategy']})")
    )
    peak = f"{r['matmul_peak_tflops']:.3g} TFLOP/s"
    memory_savers = "".join(
        [
            f", {r['accum_steps']} micro-batches" if r.get("accum_steps", 1) > 1 else "",
            ", blocks checkpointed" if r.get("grad_checkpointing") else "",
        ]
    )
    rows = [
        (
            "step",
            f"{r['model']}, {r['frames']}x{r['img_size']}^2 (stride {r['stride']}), B={r['batch_size']}, "
            f"ratio {r['ratio']} ({r['strategy']}), λ={r['adv_weight']}",
        ),
        ("decoder", decoder),
        ("run as", f"{r['dtype']} ({r['dtype_requested']} asked), {mode}{memory_savers}, {r['device']}"),
        (
            "s/step",
            f"{r['s_per_step']:.4f} median of {r['steps']} (mean {r['s_per_step_mean']:.4f}, "
            f"min {r['s_per_step_min']:.4f}); first step {r['first_step_s']:.3f}",
        ),
        ("clips/s", f"{r['clips_per_s']:.2f}"),
        (
            "TFLOP/s",
            f"{r['tflops']:.3g} ({r['flops_per_step'] / 1e9:.3g} GFLOP per step); "
            f"{100 * r['fraction_of_peak']:.1f} % of the {r['dtype']} matmul peak ({peak}, measured here)",
        ),
        (
            "peak memory",
            f"{r['peak_mem_mb']:.0f} MiB ({r['peak_mem_kind']}; process {r['process_peak_mem_mb']:.0f} MiB)",
        ),
    ]
    if r.get("hf_s_per_step") is not None:
        rows += [
            (
                "HF step",
                f"VideoMAEForPreTraining, random mask, every masked cube, fused AdamW, {r['dtype']}, {mode}: "
                f"{r['hf_s_per_step']:.4f} s median (min {r['hf_s_per_step_min']:.4f}), "
                f"{r['hf_clips_per_s']:.2f} clips/s, {r['hf_tflops']:.3g} useful TFLOP/s "
                f"({100 * r['hf_fraction_of_peak']:.1f} % of peak)",
            ),
            (
                "FMAE / HF",
                f"{r['speedup_vs_hf']:.2f}x (HF s/step over FMAE's, medians, steps alternating; "
                f"fastest steps: {r['speedup_vs_hf_min']:.2f}x)",
            ),
        ]
    if r["compile_s"] is not None:
        rows.append(("compile", f"{r['compile_s']:.1f} s"))
    gpu = r["gpu"] or "no GPU"
    omp = f", OMP_WAIT_POLICY={r['omp_wait_policy']}" if r.get("omp_wait_policy") else ""
    rows.append(("machine", f"torch {r['torch']}, {r['cpu']} ({r['cpu_threads']} threads{omp}), {gpu}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.bench",
        description="Benchmarks for comparing machines and settings.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{step,gpu}")
    _step_parser(subparsers)
    _gpu_parser(subparsers)
    args = parser.parse_args(argv)
    if args.command == "gpu":
        return run_parsed(GpuCheckConfig, _gpu, args)
    return run_parsed(StepBenchConfig, _step, args)


if __name__ == "__main__":
    sys.exit(main())
