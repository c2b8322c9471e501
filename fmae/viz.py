"""``python -m fmae.viz``: PNG grids of what an FMAE model sees and looks at.

Draws one clip's parsed regions, the mask of every strategy, the reconstruction and
the Grad-CAM of a probe's prediction (the paper's Fig. 10); see :mod:`fmae.downstream.viz`.
"""

from __future__ import annotations

import argparse
import sys

from fmae.downstream.viz import VizConfig, run_viz
from fmae.runtime.cli import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.viz",
        description="Draw one clip as PNG grids (one column per frame): regions.png (the parsed facial regions over "
        "the frames), masks.png (the facial, tube, random and frame masks at the same ratio), reconstruction.png "
        "(original, "
        "masked input, reconstruction; needs a pre-training checkpoint, since an exported encoder has no decoder) and "
        "gradcam.png (Grad-CAM of the probe's prediction over the frames; needs --probe). Without --video or "
        "--data-root the clip comes from the built-in synthetic set (generated and cached, no download).",
        epilog="Examples:\n"
        "  python -m fmae.viz --checkpoint runs/pretrain/checkpoints/ckpt-00001000.safetensors\n"
        "  python -m fmae.viz --checkpoint CKPT --probe runs/probe/probe.safetensors --index 3\n"
        "  python -m fmae.viz --checkpoint CKPT --data-root /data/daisee-faces --split Test --index 12 --ratio 0.75\n"
        "  python -m fmae.viz --checkpoint runs/probe/encoder.safetensors --probe runs/probe/probe.safetensors "
        "--video face.avi",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return run_command(parser, VizConfig, _viz, argv)


def _viz(config: VizConfig, args: argparse.Namespace) -> int:
    result = run_viz(config, progress=not args.no_progress)
    print(f"clip {result['clip']}")
    for path in result["files"].values():
        print(f"wrote {path}")
    for name, why in result["skipped"].items():
        print(f"no {name}.png: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
