"""``torchrun`` with two gloo processes on the CPU, for the tests that compare it with one process."""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

# A rank that aborts in C++ says where: Python's stack (faulthandler), glibc's message on stderr
# rather than the terminal CI lacks, and the C++ stack of a torch error.
_ENV = {"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", "LIBC_FATAL_STDERR_": "1", "TORCH_SHOW_CPP_STACKTRACES": "1"}


def torchrun(module: str, *args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 -m module *args``, output captured.

    CI once saw rank 1 die of SIGABRT with nothing on stderr a second into a run that passes
    every time here (0 in 35 tries, loaded and not). A rank killed by a signal is therefore
    tried once more, in a fresh ``out`` folder, and the first try's stderr is kept as a warning
    (pytest's summary shows it); a wrong result, an error exit or a second death still fails.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", module]
    env = {**os.environ, **_ENV}
    proc = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "exitcode  : -" in proc.stderr and "(SIG" in proc.stderr:
        warnings.warn(f"a torchrun rank died of a signal; tried again. Its stderr:\n{proc.stderr[-3000:]}")
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)
    return proc
