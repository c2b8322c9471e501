"""``python -m fmae.ablate {ratio,stride,strategy}``: the paper's ablations, one command each.

Every cell of the sweep is pre-trained and probed; the table, the plot and the JSON land
in ``--out-dir``. See :mod:`fmae.sweeps` for what each sweep runs and measures.
"""

from __future__ import annotations

import argparse
import sys

from fmae.sweeps import SWEEPS, AblationConfig, run_sweep
from fmae.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.ablate",
        description="Run one of the paper's ablations (section IV-C): every cell is pre-trained (python -m fmae.train) "
        "and its encoder probed (python -m fmae.probe); writes OUT_DIR/SWEEP.md (a table shaped like the paper's), "
        "SWEEP.json and SWEEP.png. ratio: masking ratio, Fig. 8. stride: minimum temporal stride against accuracy "
        "and cost (FLOPs, clips/s), Fig. 9. strategy: masking strategy × losses (RL, AL, RL+AL), Tables III–V. "
        "Finished cells are kept under OUT_DIR/cells and skipped on a rerun, so an interrupted sweep continues "
        "where it stopped. The defaults are small budgets (tiny model, 64×64, 100 steps, synthetic data): "
        "minutes per cell on a CPU.",
        epilog="Examples:\n"
        "  python -m fmae.ablate ratio\n"
        "  python -m fmae.ablate stride --values 1,2,4,8 --seeds 3\n"
        "  python -m fmae.ablate strategy --steps 2000 --img-size 112 --num-frames 16\n"
        "  python -m fmae.ablate ratio --values 0.5,0.9 --model fmae_vit_base --img-size 224 --num-frames 16 \\\n"
        "      --data-root /data/daisee-faces --steps 50000 --batch-size 64 --out-dir runs/ablate-vitb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", choices=SWEEPS, help="which ablation to run")
    return run_command(parser, AblationConfig, _ablate, argv)


def _ablate(config: AblationConfig, args: argparse.Namespace) -> int:
    summary = run_sweep(args.sweep, config, progress=not args.no_progress)
    files = summary["files"]
    print(f"{len(summary['rows'])} rows from {len(summary['cells'])} cells; wrote {files['md']}, {files['json']}, "
          f"{files['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
