"""``python predict_many.py ANSWERS OUT VIDEO... -- FLAGS...``: ``python -m fmae.predict``'s
``main`` on each video in turn, in this one process, each answer appended to ``ANSWERS``.

What a user's ``python -m fmae.predict VIDEO FLAGS --out-dir OUT/<k>`` runs, without loading
torch and MediaPipe once per video: the fuzzer's way to put hundreds of videos through the
command. Each line of ``ANSWERS`` (JSON) holds the video, the exit status ``main`` returned
(or 1 with the traceback when it raised), what it wrote to stderr, whether its outputs
exist, and its seconds. A line is written as soon as its video is done, so a run killed at
its bound still tells which video it was stuck on (the first without a line).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path

from fmae.predict import main

OUTPUTS = ("timeline.csv", "timeline.png", "summary.json")


def predict_one(video: str, flags: list[str], out: Path) -> dict:
    """One video through ``main``: its answer (see the module docstring)."""
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([video, *flags, "--out-dir", str(out), "--no-progress"])
        except SystemExit as done:  # argparse
            code = done.code if isinstance(done.code, int) else 1
        except Exception:  # noqa: BLE001 - what a user would see as a traceback
            code = 1
            err.write(traceback.format_exc())
    return {
        "video": video,
        "returncode": code,
        "stderr": err.getvalue(),
        "outputs": all((out / name).is_file() for name in OUTPUTS),
        "seconds": round(time.perf_counter() - start, 3),
    }


def run(answers: Path, out: Path, videos: list[str], flags: list[str]) -> None:
    """Every video through :func:`predict_one`, each into ``out/<k>``; answers appended to ``answers``."""
    for k, video in enumerate(videos):
        answer = predict_one(video, flags, out / str(k))
        with answers.open("a") as f:
            f.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    split = sys.argv.index("--")
    run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:split], sys.argv[split + 1 :])
