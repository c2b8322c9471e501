"""Running a command as the fuzzer does: in its own process group, with a wall-clock bound,
its output in files, and its peak memory measured.

A command that outlives its bound is killed with its whole group (the workers it started
included) and reported as ``timed_out``: the fuzzer counts that as a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    """How a command ended."""

    returncode: int
    """Its exit status; ``-9`` when it was killed at its bound."""
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float
    """Peak resident memory of the command's process in MiB: its ``VmHWM`` (Linux), read every
    poll. (``ru_maxrss`` would not do: it keeps, across ``exec``, the parent's size at ``fork``.)"""
    timed_out: bool


def run_bounded(argv: list[str], timeout_s: float, logs: Path, env: dict[str, str] | None = None) -> Finished:
    """Run ``argv`` for at most ``timeout_s`` seconds, its stdout and stderr written to
    ``logs.out`` and ``logs.err`` (files, so a chatty command never blocks on a full pipe)."""
    logs.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    start = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
        timed_out, peak_kb = False, 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            pid, status = os.waitpid(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout_s:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                pid, status = os.waitpid(process.pid, 0)
                break
            time.sleep(0.1)
    if not timed_out:  # workers left behind by a command that exited: not ours to keep
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.returncode = os.waitstatus_to_exitcode(status)
    return Finished(
        returncode=process.returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        seconds=round(time.monotonic() - start, 2),
        max_rss_mb=round(peak_kb / 1024, 1),
        timed_out=timed_out,
    )


def _high_water_kb(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far (``VmHWM``, KiB); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError):
        return 0


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that a command wrote as its answer: without log lines
    (``… INFO …``/``WARNING``), progress bars and native libraries' chatter."""
    kept = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text or " INFO " in text or " WARNING " in text or text.startswith(("W0000", "I0000", "INFO:")):
            continue
        kept.append(text)
    return kept


def one_clear_error(stderr: str) -> bool:
    """Whether a refused command answered with one clear error: the single line ``error: …``
    (ours), or argparse's usage lines followed by ``PROG: error: …``."""
    lines = error_lines(stderr)
    if len(lines) == 1:
        return lines[0].startswith("error: ")
    return bool(lines) and lines[0].startswith("usage: ") and ": error: " in lines[-1]
