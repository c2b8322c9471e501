"""``python -m fmae.probe``: how well a pre-trained FMAE encoder recognises engagement.

Trains a linear probe on the frozen encoder's features (or with ``--finetune`` the whole
encoder) and reports accuracy, precision/recall/F1 and the confusion matrix on the
test split; see :mod:`fmae.downstream.probe` for the method and the files it writes.
"""

from __future__ import annotations

import argparse
import os
import sys

from fmae.downstream.metrics import paired_sentence
from fmae.downstream.probe import ProbeConfig, run_probe
from fmae.runtime.cli import run_command


def _summary(report: dict) -> str:
    base = report.get("random_init")
    paired = paired_sentence(report)
    paired = f"; {paired}" if paired else ""
    if "accuracy" in report:
        beside = f"random init {base['accuracy']:.4f}, " if base else ""
        return (
            f"accuracy {report['accuracy']:.4f} ({beside}majority-class baseline "
            f"{report['majority_accuracy']:.4f}), "
            f"F1 weighted {report['f1']['weighted']:.4f}, macro {report['f1']['macro']:.4f}{paired}"
        )
    beside = f"random init {base['mse']:.4f}; " if base else ""
    return f"MSE {report['mse']:.4f} ({beside}predicting the training mean: {report['mean_baseline_mse']:.4f}){paired}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.probe",
        description="Evaluate an FMAE encoder: train a linear probe on its frozen features (Adam, betas (0.5, 0.9), "
        "lr 1e-4) on the Train split and report on the Test split, beside the same probe on a randomly initialised "
        "encoder of the same architecture (--random-baseline false skips it). Without --data-root it uses the "
        "synthetic engagement set (generated and cached, no download). Features are cached, so further probes of the "
        "same encoder (other seeds, heads, learning rates) skip the encoder pass.",
        epilog="Examples:\n"
        "  python -m fmae.probe --checkpoint runs/pretrain        # the newest valid checkpoint of a run\n"
        "  python -m fmae.probe --checkpoint CKPT --random-init --out-dir runs/probe-random   # baseline\n"
        "  python -m fmae.probe --checkpoint CKPT --data-root /data/DAiSEE --balance weights --test-views 4\n"
        "  python -m fmae.probe --checkpoint CKPT --task emotiw --data-root /data/EmotiW\n"
        "  python -m fmae.probe --checkpoint CKPT --finetune --finetune-epochs 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return run_command(parser, ProbeConfig, _probe, argv)


def _probe(config: ProbeConfig, args: argparse.Namespace) -> int:
    report = run_probe(config, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 wrote the files
        print(f"{report['mode']} on {report['split']} ({report['eval_videos']} videos): {_summary(report)}")
        print(f"wrote {config.out_dir}/metrics.md, metrics.json, probe.safetensors, predictions.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
