"""``python -m fmae.bench step``: how fast the pre-training step runs on this machine.

The real step (:meth:`fmae.pretrain.Pretrainer.step`, discriminator update included when
λ > 0) on random clips and region maps, timed as described in :mod:`fmae.benchmarking`;
a small table, or with ``--json`` one JSON object on stdout. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fmae.benchmarking import StepBenchConfig, bench_step
from fmae.config import add_config_args, config_from_args

_EXAMPLES = """examples:
  python -m fmae.bench step                                     # tiny model, 16x224^2, B=2, ratio 0.9
  python -m fmae.bench step --model base --ratio 0.9 --batch-size 2 --dtype bf16 --json
  python -m fmae.bench step --model base --compile --warmup 3 --steps 20
  python -m fmae.bench step --adv-weight 0 --strategy random    # plain masked-autoencoder step
  python -m fmae.bench step --model tiny --img-size 112 --device cpu --dtype fp32
"""


def _step_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "step", help="time the pre-training step",
        description="Time the real FMAE pre-training step (masking, encoder, decoder, losses, backward, fused AdamW; "
        "the discriminator's update too when --adv-weight > 0) on random clips and region maps. Reports s/step "
        "(median), clips/s, achieved TFLOP/s (matrix products, fmae.flops), peak memory of the step, the compute "
        "dtype and the torch/CPU/GPU it ran on.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, StepBenchConfig)
    parser.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                        help="run the model eagerly (the default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary of one :func:`fmae.benchmarking.bench_step` result."""
    r = result
    mode = "compiled" if r["compile"] else "eager"
    rows = [
        ("step", f"{r['model']}, {r['frames']}x{r['img_size']}^2 (stride {r['stride']}), B={r['batch_size']}, "
                 f"ratio {r['ratio']} ({r['strategy']}), λ={r['adv_weight']}"),
        ("run as", f"{r['dtype']} ({r['dtype_requested']} asked), {mode}, {r['device']}"),
        ("s/step", f"{r['s_per_step']:.4f} median of {r['steps']} (mean {r['s_per_step_mean']:.4f}, "
                   f"min {r['s_per_step_min']:.4f}); first step {r['first_step_s']:.3f}"),
        ("clips/s", f"{r['clips_per_s']:.2f}"),
        ("TFLOP/s", f"{r['tflops']:.3g} ({r['flops_per_step'] / 1e9:.3g} GFLOP per step)"),
        ("peak memory", f"{r['peak_mem_mb']:.0f} MiB ({r['peak_mem_kind']}; process {r['process_peak_mem_mb']:.0f} MiB)"),
    ]
    if r["compile_s"] is not None:
        rows.append(("compile", f"{r['compile_s']:.1f} s"))
    gpu = r["gpu"] or "no GPU"
    rows.append(("machine", f"torch {r['torch']}, {r['cpu']} ({r['cpu_threads']} threads), {gpu}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.bench", description="Benchmarks for comparing machines and settings.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{step}")
    _step_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(StepBenchConfig, args)
        result = bench_step(config, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
