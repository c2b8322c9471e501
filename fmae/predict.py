"""``python -m fmae.predict [VIDEO]``: engagement over time for a new recording.

Finds the face in every frame, slides the probe's clip window over the recording,
scores each window with the encoder and a probe from ``python -m fmae.probe``, and
writes ``timeline.csv``, ``timeline.png``, ``summary.json`` and ``report.html`` (with
``--faces all`` per person, beside ``tracks.csv``); see
:mod:`fmae.downstream.predict` for the method.
"""

from __future__ import annotations

import argparse
import sys

from fmae.downstream.live import run_live
from fmae.downstream.predict import NO_FACE, PredictConfig, run_predict
from fmae.runtime.cli import run_command


def _windows(summary: dict) -> list[str]:
    """One face's or person's windows: counts, shares or mean score, segments."""
    lines = [
        f"{summary['windows']} windows, {summary['scored_windows']} scored, {summary['no_face_windows']} {NO_FACE}"
    ]
    if "level_share" in summary:
        lines.append("share of scored windows: " + ", ".join(f"{c} {s:.0%}" for c, s in summary["level_share"].items()))
    elif summary["mean_score"] is not None:
        lines.append(f"mean score {summary['mean_score']:.3f}")
    lines += [f"  {a:7.2f}–{b:7.2f} s  {level}" for a, b, level in summary["segments"]]
    return lines


def _summary(summary: dict) -> str:
    head = f"{summary['video']}: {summary['frames']} frames at {summary['fps']:g} fps"
    if "persons" in summary:  # --faces all
        n = summary["people"]
        said = summary["status"] + (f": {summary['message']}" if summary["message"] else "")
        # A recorded status (no one seen, too many people) is the news, not "0 people".
        lines = [f"{head}: {n} {'person' if n == 1 else 'people'} ({said})" if n else f"{head}: {said}"]
        for person in summary["persons"]:
            first, *rest = _windows(person)
            lines.append(f"{person['person']}: a face in {person['frames_with_face']} frames; {first}")
            lines += [f"  {line}" for line in rest]
    else:
        first, *rest = _windows(summary)
        lines = [f"{head}, a face in {summary['frames_with_face']}; {first}", *rest]
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
        "score for a regression probe), timeline.png, summary.json and report.html (one page to open in a browser: "
        "thumbnail, timeline and summary per person, images inline) to --out-dir. With --faces all every person "
        "gets a timeline: timeline.csv gains a last column person (the name in tracks.csv, also written: frame, "
        "time_s, person, box, score), timeline.png a row per person, summary.json an entry per person; no one seen "
        "or more people than --max-faces is recorded as the status in summary.json and the report. Without VIDEO "
        "it predicts a generated demo recording whose engagement changes in known segments.",
        epilog="Examples:\n"
        "  python -m fmae.predict lecture.mp4 --probe runs/probe/probe.safetensors\n"
        "  python -m fmae.predict                      # the demo recording, with the default probe\n"
        "  python -m fmae.predict clip.avi --probe P --checkpoint runs/pretrain/checkpoints/ckpt-00001000.safetensors\n"
        "  python -m fmae.predict clip.avi --hop 0.25 --min-face 0.8 --work-dir faces/ --out-dir runs/predict-clip\n"
        "  python -m fmae.predict class.mp4 --probe P --faces all --max-faces 30   # every student: a timeline each\n"
        "  python -m fmae.predict --live 0 --probe P                   # the webcam, a row per window as it goes\n"
        "  python -m fmae.predict --live rtsp://cam.local/stream --probe P --faces all --threads 2\n"
        "  python -m fmae.predict --live lecture.mp4 --probe P         # a file, at its own frame rate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", nargs="?", help="the recording (any FFmpeg-readable video); omit for the demo")
    parser.add_argument(
        "--live",
        metavar="SOURCE",
        default=None,
        help="predict while it happens instead: SOURCE is a camera index (0), a stream URL (rtsp://…, http://…) or a "
        "video file, read at its own frame rate as a camera delivers it. A row per window (per person with --faces "
        "all) is printed and appended to timeline.csv as soon as the window is decided; when the work falls behind "
        "the source, frames are dropped and counted rather than letting the delay grow. Ctrl-C (or the file's end) "
        "stops it and prints the frames read and dropped, the windows, the real-time factor and the latency, also "
        "written to live.json",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads for the encoder and OpenCV (0: torch's default, all cores)",
    )
    return run_command(parser, PredictConfig, _predict, argv)


def _predict(config: PredictConfig, args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.live is not None:
        if args.video is not None:
            raise ValueError("give either a VIDEO or --live SOURCE, not both")
        run_live(args.live, config, emit=lambda line: print(line, flush=True))
        print(f"wrote {config.out_dir}/timeline.csv, live.json, config.yaml")
        return 0
    summary = run_predict(args.video, config, progress=not args.no_progress)
    print(_summary(summary))
    tracks = ", tracks.csv" if summary.get("tracks") else ""
    print(f"wrote {config.out_dir}/timeline.csv, timeline.png, summary.json, report.html{tracks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
