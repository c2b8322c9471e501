"""``python -m fmae.preprocess SRC OUT``: face crops and region maps for every video under SRC.

See :mod:`fmae.data.preprocess` for what is written and :mod:`fmae.data.face_pass` for the statuses and the gap rule.
"""

from __future__ import annotations

import argparse
import sys

from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import preprocess
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.preprocess",
        description="Detect and track one face per video, crop it, parse it into the 7 facial regions and cache "
        "crops (MJPEG .avi) and region maps (.regions.npz) under OUT, mirroring SRC; label files are copied. "
        "With --faces all, every person gets an identity, their own crops and maps (OUT/<video>/person-NN.*) "
        "and a row per detection in OUT/<video>/tracks.csv. "
        "Reruns skip finished videos; bad files get a status in OUT/manifest.jsonl and never stop the run.",
        epilog="Examples: python -m fmae.preprocess /data/DAiSEE /data/DAiSEE-faces --workers 8; "
        "python -m fmae.preprocess /data/lessons /data/lessons-faces --faces all --max-faces 30",
    )
    parser.add_argument("src", metavar="SRC", help="folder of videos (searched recursively)")
    parser.add_argument("out", metavar="OUT", help="cache folder (created; may already hold a partial run)")
    parser.add_argument(
        "--no-regions",
        dest="regions",
        action="store_const",
        const=False,
        help="crops only, without region maps (the same as --regions false)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes [%(default)s]")
    parser.add_argument(
        "--rank", type=int, default=0, help="this machine's shard: video i goes to rank i %% world-size [%(default)s]"
    )
    parser.add_argument("--world-size", type=int, default=1, help="number of shards [%(default)s]")
    parser.add_argument(
        "--retry", action="store_true", help="also redo videos recorded as no_face, unreadable or empty"
    )
    return run_command(parser, PreprocessConfig, _preprocess, argv)


def _preprocess(config: PreprocessConfig, args: argparse.Namespace) -> int:
    counts = preprocess(
        args.src,
        args.out,
        config,
        workers=args.workers,
        rank=args.rank,
        world_size=args.world_size,
        retry=args.retry,
        progress=not args.no_progress,
    )
    done = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    print(f"done: {done}" if done else "done: no videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
