"""What every ``python -m fmae.<command>`` shares: settings from flags and YAML, logging
(quiet about third-party libraries unless ``--verbose``), and bad input reported as one
``error:`` line with an exit status instead of a traceback."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
import threading
from typing import Callable, TypeVar

from fmae.runtime.config import add_config_args, config_from_args
from fmae.runtime.files import NO_ROOM
from fmae.runtime.lock import FolderInUseError

C = TypeVar("C")

# Lines that MediaPipe, absl and TensorFlow Lite write from C++ straight to file
# descriptor 2, e.g. "W0000 00:00:1796014902.742969 5427 inference_feedback_manager.cc:114] ...".
_NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\]|INFO: Created TensorFlow Lite|"
    rb"WARNING: All log messages before absl::InitializeLog)"
)
_THIRD_PARTY_LOGGERS = ("absl", "mediapipe", "tensorflow", "jax", "matplotlib", "PIL", "h5py")
_filtering = False


def _drop_native_logs() -> None:
    """Route file descriptor 2 through a thread that drops :data:`_NATIVE_LOG` lines.

    Python's own stderr (our logs, progress bars, error lines) is moved to a copy of the
    real descriptor first, so it is neither delayed nor filtered; only what native code
    writes to descriptor 2 (in this process and in its workers) goes through the filter,
    and every other line of it (a real crash message) still reaches the terminal.
    """
    global _filtering
    if _filtering or sys.stderr is not sys.__stderr__:  # already done, or stderr is captured (pytest)
        return
    _filtering = True
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(real, "w", closefd=False),
        encoding=sys.stderr.encoding,
        errors="backslashreplace",
        line_buffering=True,
    )

    def pump() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not _NATIVE_LOG.match(line):
                    os.write(real, line)

    threading.Thread(target=pump, name="fmae-native-log-filter", daemon=True).start()


def setup_output(verbose: bool = False) -> None:
    """Our INFO lines on stderr; third-party log lines only when ``verbose``. Call it
    before MediaPipe or TensorFlow Lite load (every command does, first thing)."""
    if not verbose:
        _drop_native_logs()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GLOG_minloglevel", "2")
        for name in _THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def add_command_args(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """``config_cls``'s flags, ``--config``, ``--no-progress`` and ``--verbose``."""
    add_config_args(parser, config_cls)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the log lines of third-party libraries (MediaPipe, absl, TensorFlow Lite)",
    )


def describe_os_error(err: OSError) -> str:
    """One line for a failed read or write: the file, what went wrong and, when the disk is
    full (or a quota or file-size limit is reached), what to do."""
    text = f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err)
    if err.errno in NO_ROOM:
        text += (
            " (the disk is full, or a quota or file-size limit is reached): nothing was written "
            "half-way; make room and run it again, and it goes on from the outputs already complete"
        )
    return text


def run_parsed(config_cls: type[C], run: Callable[[C, argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Set up the output, build the config from ``args`` and return ``run(config, args)``.
    Bad input (``ValueError``, a missing file, a missing optional package) or an output
    folder another run holds prints ``error: …`` and returns 2; a run stopped by non-finite
    losses returns 3; any other failed read or write (a full disk) returns 1."""
    setup_output(getattr(args, "verbose", False))
    try:
        return run(config_from_args(config_cls, args), args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, FolderInUseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3


def run_command(
    parser: argparse.ArgumentParser,
    config_cls: type[C],
    run: Callable[[C, argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """Add :func:`add_command_args` to ``parser``, parse ``argv`` and :func:`run_parsed`:
    ``run`` does the work, prints what it wrote and returns the exit status."""
    add_command_args(parser, config_cls)
    return run_parsed(config_cls, run, parser.parse_args(argv))
