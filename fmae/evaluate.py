"""``python -m fmae.evaluate CHECKPOINT``: how well a pre-trained model reconstructs
masked cubes of held-out clips, overall and per facial region, beside three baselines
that see the same visible cubes; see :mod:`fmae.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from fmae.evaluation.evaluate import EvaluateConfig, run_evaluate
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.evaluate",
        description="Masked-cube reconstruction error of a pre-trained FMAE model on held-out clips (centred, masks "
        "seeded by --seed): the mean squared error of the masked cubes in the space of the training targets, overall "
        "and for each facial region (a cube counts for the region that labels its token, as in the facial mask), "
        "beside three baselines on the very same masks: visible_mean (the mean of the clip's visible cubes), "
        "nearest_visible (the nearest visible cube in space-time) and temporal_interp (linear interpolation in time "
        "between the visible cubes at the same position before and after). Writes reconstruction.json and "
        "reconstruction.md to --out-dir. Without --data-root it uses the Test split of the built-in synthetic set "
        "(generated and cached, no download).",
        epilog="Examples:\n"
        "  python -m fmae.evaluate runs/pretrain                    # a run folder: its newest checkpoint\n"
        "  python -m fmae.evaluate runs/pretrain/checkpoints/ckpt-00001000.safetensors --clips 20 --ratio 0.75\n"
        "  python -m fmae.evaluate runs/vitb --data-root /data/daisee-faces --split Validation --strategy tube\n"
        "  python -m fmae.evaluate runs/pretrain --data-root /data/webcam-faces   # a plain folder: every video",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint_arg",
        nargs="?",
        metavar="CHECKPOINT",
        help="run folder, pre-training checkpoint or whole-model weights (same as --checkpoint)",
    )
    return run_command(parser, EvaluateConfig, _evaluate, argv)


def _evaluate(config: EvaluateConfig, args: argparse.Namespace) -> int:
    config = dataclasses.replace(config, checkpoint=args.checkpoint_arg or config.checkpoint)
    run_evaluate(config, progress=not args.no_progress)
    out = Path(config.out_dir).expanduser()
    print((out / "reconstruction.md").read_text(), end="")
    print(f"wrote {out / 'reconstruction.json'}, {out / 'reconstruction.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
