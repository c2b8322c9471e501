"""``python -m fmae.extract VIDEO_OR_DIR... --weights W --out-dir DIR``: encoder features of whole videos.

See :mod:`fmae.downstream.extract` for the windows, the files and resuming.
"""

from __future__ import annotations

import argparse
import sys

from fmae.downstream.extract import ExtractConfig, run_extract
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.extract",
        description="Features of whole videos from an FMAE encoder (or VideoMAE / MARLIN weights converted with "
        "python -m fmae.convert): the face pipeline finds and crops the face (unless --cropped), windows of the "
        "encoder's clip length (frames × temporal stride) every --hop seconds go through the encoder, and each "
        "video's features are written to OUT/<its path>.features.safetensors (features [windows, D], or "
        "[windows, tokens, D] with --pool tokens; start_s, end_s, face_fraction), with OUT/index.csv listing every "
        "window. Reruns skip finished videos; a bad or face-less video is recorded in the index and never stops "
        "the run.",
        epilog="Examples:\n"
        "  python -m fmae.extract lecture.mp4 --weights runs/pretrain --out-dir runs/features\n"
        "  python -m fmae.extract /data/webcam --weights vitb.safetensors --out-dir /data/feats --workers 2 --hop 1\n"
        "  python -m fmae.extract /data/crops --weights marlin-b.safetensors --cropped --pool tokens\n"
        "  python -m fmae.extract /data/webcam --weights W --out-dir F --rank 0 --world-size 4   # machine 1 of 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="videos, or folders searched recursively")
    return run_command(parser, ExtractConfig, _extract, argv)


def _extract(config: ExtractConfig, args: argparse.Namespace) -> int:
    counts = run_extract(args.inputs, config, progress=not args.no_progress)
    done = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    print(f"done: {done or 'no videos'}; index: {config.out_dir}/index.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
