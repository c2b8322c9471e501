"""``python -m fmae.predict [VIDEO]``: engagement over time for a new recording.

Finds the face in every frame, slides the probe's clip window over the recording,
scores each window with the encoder and a probe from ``python -m fmae.probe``, and
writes ``timeline.csv``, ``timeline.png`` and ``summary.json``; see
:mod:`fmae.downstream.predict` for the method.
"""

from __future__ import annotations

import argparse
import sys

from fmae.downstream.predict import NO_FACE, PredictConfig, run_predict
from fmae.runtime.cli import run_command


def _summary(summary: dict) -> str:
    lines = [
        f"{summary['video']}: {summary['frames']} frames at {summary['fps']:g} fps, a face in "
        f"{summary['frames_with_face']}; {summary['windows']} windows, {summary['scored_windows']} scored, "
        f"{summary['no_face_windows']} {NO_FACE}"
    ]
    if "level_share" in summary:
        lines.append("share of scored windows: " + ", ".join(f"{c} {s:.0%}" for c, s in summary["level_share"].items()))
    elif summary["mean_score"] is not None:
        lines.append(f"mean score {summary['mean_score']:.3f}")
    lines += [f"  {a:7.2f}–{b:7.2f} s  {level}" for a, b, level in summary["segments"]]
    if "truth" in summary:
        lines.append(
            "true segments of the demo recording (level 0–3): "
            + ", ".join(f"{a:g}–{b:g} s: {level}" for a, b, level in summary["truth"])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmae.predict",
        description="Engagement over time for a recording: the face pipeline (MediaPipe) crops the face in every "
        "frame, windows of the probe's clip length slide over it, and the encoder plus a probe from "
        "python -m fmae.probe score each window. Windows where most frames show no face are reported as no_face, "
        "not guessed. Writes timeline.csv (start_s, end_s, face_fraction, then level, confidence, p_<class>, or "
        "score for a regression probe), timeline.png and summary.json to --out-dir. Without VIDEO it predicts a "
        "generated demo recording whose engagement changes in known segments.",
        epilog="Examples:\n"
        "  python -m fmae.predict lecture.mp4 --probe runs/probe/probe.safetensors\n"
        "  python -m fmae.predict                      # the demo recording, with the default probe\n"
        "  python -m fmae.predict clip.avi --probe P --checkpoint runs/pretrain/checkpoints/ckpt-00000300.safetensors\n"
        "  python -m fmae.predict clip.avi --hop 0.25 --min-face 0.8 --work-dir faces/ --out-dir runs/predict-clip",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", nargs="?", help="the recording (any FFmpeg-readable video); omit for the demo")
    return run_command(parser, PredictConfig, _predict, argv)


def _predict(config: PredictConfig, args: argparse.Namespace) -> int:
    summary = run_predict(args.video, config, progress=not args.no_progress)
    print(_summary(summary))
    print(f"wrote {config.out_dir}/timeline.csv, timeline.png, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
