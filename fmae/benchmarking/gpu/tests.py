"""Check 1, ``tests``: the GPU tests — ``pytest tests/ops`` (every CUDA and Triton kernel
against its reference, on the GPU there) and the test files outside ``tests/ops`` that look
for CUDA (:func:`pytest_targets`), in one pytest process; pass/fail counts, the failures
and the end of the output; the whole log as ``gpu_tests.log``."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from fmae.benchmarking.gpu.config import TESTS_LOG, GpuCheckConfig
from fmae.benchmarking.gpu.runner import TAIL_CHARS, Context, Skip, kill_group, source_root, start_group

CUDA_GATED = re.compile(r"torch\.cuda\.is_available\(\)")
OWN_TESTS = "test_gpu_"
"""The start of this command's own test files' names (they run nothing on a GPU)."""
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b")
_PROGRESS = re.compile(r"^(?:\S+\.py\s+)?([.FEsxX]+)\s*(?:\[\s*\d+%\])?$")


def pytest_targets(root: Path) -> list[str]:
    """``tests/ops`` and the test files beside it that ask for CUDA (``torch.cuda.is_available()``),
    but for this command's own tests (:data:`OWN_TESTS`)."""
    targets = ["tests/ops"] if (root / "tests" / "ops").is_dir() else []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if path.name.startswith(OWN_TESTS) or "ops" in path.relative_to(root / "tests").parts[:-1]:
            continue
        try:
            if CUDA_GATED.search(path.read_text(errors="replace")):
                targets.append(path.relative_to(root).as_posix())
        except OSError:
            continue
    return targets


def pytest_command(root: Path) -> list[str]:
    """The tests' pytest command line (run from ``root``). Without PyAV, ``tests/conftest.py``
    (which imports ``fmae.data``) cannot load: then ``tests/ops`` alone, its conftest only."""
    base = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        "--durations=10",
    ]
    if importlib.util.find_spec("av") is None:
        return [*base, "--confcutdir", "tests/ops", "tests/ops"]
    return [*base, *pytest_targets(root)]


def parse_pytest_counts(text: str) -> dict[str, int]:
    """The counts of pytest's closing line (``3 failed, 120 passed, 2 skipped in 9.1s``)."""
    for line in reversed(text.strip().splitlines()[-30:]):
        found = _COUNT.findall(line)
        if found and re.search(r"\bin [\d.]+s\b", line):
            counts: dict[str, int] = {}
            for number, word in found:
                key = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[key] = counts.get(key, 0) + int(number)
            return counts
    return {}


def parse_pytest_progress(text: str) -> dict[str, int]:
    """Outcomes so far from ``-q``'s progress lines (``..F.s  [ 40%]``): for a run stopped before its summary."""
    names = {".": "passed", "F": "failed", "E": "errors", "s": "skipped", "x": "xfailed", "X": "xpassed"}
    counts: dict[str, int] = {}
    for line in text.splitlines():
        found = _PROGRESS.match(line.strip())
        if found:
            for char in found.group(1):
                counts[names[char]] = counts.get(names[char], 0) + 1
    return counts


def run_pytest(cmd: Sequence[str], cwd: Path, limit_s: float, log_path: Path) -> dict[str, Any]:
    """Run pytest as ``cmd`` for at most ``limit_s``; its counts, failures, exit status and the end of its output."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = start_group(cmd, log, cwd)
        try:
            rc: int | None = proc.wait(timeout=max(1.0, limit_s))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = None
    text = log_path.read_text(errors="replace")
    return {
        "command": " ".join(cmd),
        "returncode": rc,
        "timed_out": rc is None,
        "seconds": round(time.monotonic() - start, 1),
        "counts": parse_pytest_counts(text),
        "counts_so_far": parse_pytest_progress(text) if rc is None else None,
        "problems": [line for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))][:60],
        "output_tail": text[-TAIL_CHARS:],
        "log": str(log_path),
    }


def plan(config: GpuCheckConfig, root: Path | None) -> list[str]:
    """What :func:`check` would run, for the dry run."""
    if root is None:
        return ["pytest tests/ops ... (no source checkout here: it would be skipped)"]
    return [
        " ".join(["python", *pytest_command(root)[1:]]) + f"  (log: {Path(config.out) / TESTS_LOG})",
        "CUDA and Triton kernels against their references on the GPU; pass/fail counts and the failures",
    ]


def check(ctx: Context) -> None:
    root = source_root()
    if root is None:
        raise Skip("no tests/ops here: run from the source checkout")
    cmd = pytest_command(root)
    if "--confcutdir" in cmd:
        ctx.notes.append("PyAV (av) is not installed: tests/conftest.py cannot load, so tests/ops ran alone")
    ctx.details.update(run_pytest(cmd, root, ctx.left() - 2.0, Path(ctx.config.out) / TESTS_LOG))
    d = ctx.details
    if d["timed_out"]:
        so_far = ", ".join(f"{v} {k}" for k, v in (d["counts_so_far"] or {}).items()) or "no progress read"
        ctx.failures.append(f"pytest ran out of its {d['seconds']:.0f} s and was stopped ({so_far} by then)")
    elif d["returncode"] != 0:
        counts = ", ".join(f"{v} {k}" for k, v in d["counts"].items()) or "no counts"
        ctx.failures.append(f"pytest exited with status {d['returncode']} ({counts})")
    ctx.failures += d["problems"][:20]
