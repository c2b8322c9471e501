"""``python -m fmae.preprocess SRC OUT``: face crops and region maps for every video under SRC.

See :mod:`fmae.preprocessing` for what is written, the statuses and the gap rule.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fmae.face.backend import available_backends
from fmae.preprocessing import PreprocessConfig, preprocess

_DEFAULTS = PreprocessConfig()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.preprocess",
        description="Detect and track one face per video, crop it, parse it into the 7 facial regions and cache "
        "crops (MJPEG .avi) and region maps (.regions.npz) under OUT, mirroring SRC; label files are copied. "
        "Reruns skip finished videos; bad files get a status in OUT/manifest.jsonl and never stop the run.",
        epilog="Example: python -m fmae.preprocess /data/DAiSEE /data/DAiSEE-faces --workers 8",
    )
    parser.add_argument("src", metavar="SRC", help="folder of videos (searched recursively)")
    parser.add_argument("out", metavar="OUT", help="cache folder (created; may already hold a partial run)")
    parser.add_argument("--size", type=int, default=_DEFAULTS.size, help="crop side in pixels [%(default)s]")
    parser.add_argument("--margin", type=float, default=_DEFAULTS.margin, help="crop border around the face box, fraction of its size per side [%(default)s]")
    parser.add_argument("--smooth", type=int, default=_DEFAULTS.smooth, help="frames in the centred box-smoothing window, odd [%(default)s]")
    parser.add_argument("--max-gap", type=int, default=_DEFAULTS.max_gap, help="frames a face-less frame may borrow the last face's landmarks across [%(default)s]")
    parser.add_argument("--backend", default=_DEFAULTS.backend, choices=available_backends(), help="face backend [%(default)s]")
    parser.add_argument("--weights", metavar="DIR", default=None, help="model folder for the facexlib backend (it never downloads)")
    parser.add_argument("--qscale", type=int, default=_DEFAULTS.qscale, help="MJPEG quality, 2 best .. 31 worst [%(default)s]")
    parser.add_argument("--no-regions", action="store_true",
                        help="crops only, without parsing them into regions: about twice as fast, enough to probe or "
                             "predict, but pre-training with the facial mask needs the region maps")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes [%(default)s]")
    parser.add_argument("--rank", type=int, default=0, help="this machine's shard: video i goes to rank i %% world-size [%(default)s]")
    parser.add_argument("--world-size", type=int, default=1, help="number of shards [%(default)s]")
    parser.add_argument("--retry", action="store_true", help="also redo videos recorded as no_face, unreadable or empty")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = PreprocessConfig(size=args.size, margin=args.margin, smooth=args.smooth, max_gap=args.max_gap, backend=args.backend, weights=args.weights, qscale=args.qscale,
                                  regions=not args.no_regions)
        counts = preprocess(args.src, args.out, config, workers=args.workers, rank=args.rank, world_size=args.world_size, retry=args.retry, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("done: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n) if any(counts.values()) else "done: no videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
