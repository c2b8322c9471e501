"""``python -m fmae.train``: self-supervised FMAE pre-training.

With no arguments it pre-trains the tiny model on the built-in synthetic face videos
(generated once and cached) in a few minutes on a CPU, writing checkpoints, TensorBoard
logs and reconstruction images to ``runs/pretrain``.
"""

from __future__ import annotations

import argparse
import sys

from fmae.pretraining.train import TrainConfig, pretrain
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.train",
        description="Pre-train FMAE (facial masked autoencoder) on face videos. Without --data-root it uses "
        "a synthetic face-video set that FMAE generates and caches (no download).",
        epilog="Example: python -m fmae.train --model fmae_vit_base --img-size 224 --data-root /data/daisee-faces "
        "--steps 100000 --batch-size 64.  Your own recordings, unlabelled: python -m fmae.preprocess /data/webcam "
        "/data/webcam-faces, then --data-root /data/webcam-faces.  Several processes: "
        "torchrun --nproc-per-node 8 -m fmae.train ... "
        "(the batch size is global; see docs/distributed.md for several machines).",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out-dir")
    return run_command(parser, TrainConfig, _train, argv)


def _train(config: TrainConfig, args: argparse.Namespace) -> int:
    path = pretrain(config, resume=args.resume, progress=not args.no_progress)
    print(f"done: last checkpoint {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
