"""Commands print our lines only: MediaPipe's, absl's and TensorFlow Lite's native log lines
(written from C++ straight to file descriptor 2) appear with ``--verbose`` alone, and a
failed write or a folder in use is one ``error:`` line, not a traceback."""

import argparse
import errno
import subprocess
import sys
from dataclasses import dataclass

import pytest

from fmae.runtime.cli import run_parsed
from fmae.runtime.lock import FolderInUseError

NATIVE = ("inference_feedback_manager", "TensorFlow Lite", "absl::InitializeLog")


def _preprocess(src, out, *extra):
    cmd = [sys.executable, "-m", "fmae.preprocess", str(src), str(out), "--size", "32", "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_third_party_log_lines_only_with_verbose(small_set, tmp_path):
    # Two videos are enough to load every MediaPipe graph the face pipeline uses.
    src = tmp_path / "src"
    src.mkdir()
    for video in sorted((small_set / "DataSet" / "Train").rglob("*.avi"))[:2]:
        (src / video.name).write_bytes(video.read_bytes())
    quiet = _preprocess(src, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "done: 2 ok" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in NATIVE)], quiet.stderr
    assert "INFO fmae.data.preprocess: preprocess" in quiet.stderr  # our own log lines still show
    loud = _preprocess(src, tmp_path / "loud", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert any(n in loud.stderr for n in NATIVE), loud.stderr


@dataclass
class _NoSettings:
    """A command without settings."""


@pytest.mark.parametrize(
    "failure, status, line",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/x/ckpt.safetensors"),
            1,
            "error: /runs/x/ckpt.safetensors: No space left on device (the disk is full, or a quota or file-size "
            "limit is reached): nothing was written half-way; make room and run it again, and it goes on from the "
            "outputs already complete",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x"), 1, "error: /runs/x: Permission denied"),
        (FolderInUseError("/runs/x is in use by another run"), 2, "error: /runs/x is in use by another run"),
    ],
)
def test_failed_writes_and_folders_in_use_are_one_line(failure, status, line, capsys):
    def run(config, args):
        raise failure

    assert run_parsed(_NoSettings, run, argparse.Namespace()) == status
    assert capsys.readouterr().err == line + "\n"
