"""Running checks within a time budget: each in a Python process of its own with a time
limit (:func:`run_in_child`, killed with what it started when it overruns), or in this one
(:func:`run_inline`); :func:`allot` shares the budget out, :func:`run_checks` runs them in
order. What a check gets (:class:`Context`) and may raise (:class:`Skip`), and the helpers
the checks share (:func:`require_cuda`, :func:`error_line`, :func:`free_memory`)."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from fmae.benchmarking.gpu.config import Check, GpuCheckConfig
from fmae.benchmarking.gpu.report import jsonable, summary_line
from fmae.runtime.files import write_json

GRACE_S = 30.0
"""How long a check's process may run past its limit (to finish a case and report) before it is killed."""
TAIL_CHARS = 6000


class Skip(Exception):
    """Raised by a check (or a case of one) that cannot run here; the message says why."""


class Context:
    """What a check gets: its settings, its deadline, a scratch folder, and the place to put
    what it finds — ``details`` (numbers), ``failures`` (what went wrong, one line each)
    and ``notes``. :meth:`save` hands the partial results to the runner, which keeps them
    if the check is killed."""

    def __init__(
        self,
        config: GpuCheckConfig,
        deadline: float,
        scratch: Path,
        save: Callable[[dict], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.deadline, self.scratch = config, deadline, Path(scratch)
        self.details: dict[str, Any] = {}
        self.failures: list[str] = []
        self.notes: list[str] = []
        self._save, self._clock = save, clock

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - self._clock()

    def partial(self) -> dict[str, Any]:
        return {"details": self.details, "failures": self.failures, "notes": self.notes}

    def save(self) -> None:
        if self._save is not None:
            try:
                self._save(self.partial())
            except Exception:  # saving is a courtesy; it never stops the check
                pass


# ----------------------------------------------------------------------------- what checks share


def cuda_status() -> tuple[bool, str]:
    """Whether CUDA can be used here, and a line that says so."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001
        return False, f"torch does not import ({err})"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a build without CUDA"
    try:
        available = torch.cuda.is_available()
    except Exception as err:  # noqa: BLE001
        return False, f"torch {torch.__version__} cannot reach CUDA ({err})"
    if not available:
        return False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees {torch.cuda.device_count()} GPU(s)"


def require_cuda() -> None:
    ok, why = cuda_status()
    if not ok:
        raise Skip(f"no CUDA: {why}")


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def error_line(err: BaseException, chars: int = 700) -> str:
    """``Type: message`` on one line (a multi-line message's lines joined), at most about ``chars``
    long: its start and its end, where libraries such as DALI say what went wrong."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {' | '.join(lines)}"
    return text if len(text) <= chars else f"{text[:200]} … {text[-(chars - 200) :]}"


def source_root() -> Path | None:
    """The source checkout (the folder with ``tests/ops``): the working folder, else the one above the package."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):  # fmae/benchmarking/gpu/ -> the checkout
        if (base / "tests" / "ops").is_dir():
            return base
    return None


def child_env() -> dict[str, str]:
    """The checks' environment: Triton compiled for the GPU, never its CPU interpreter."""
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_group(cmd: Sequence[str], log: Any, cwd: str | Path) -> subprocess.Popen:
    """Start ``cmd`` with its output into ``log``, in :func:`child_env`, leading its own process group."""
    return subprocess.Popen(
        list(cmd),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=child_env(),
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen) -> None:
    """End ``proc`` and what it started (it leads its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


# ----------------------------------------------------------------------------- the budget and the results


def allot(left: float, check: Check, later: Sequence[Check] = ()) -> float | None:
    """The time limit of ``check`` with ``left`` seconds of the budget, or ``None`` to skip it.

    It runs only if ``left`` covers its ``estimate_s``; then for at most its ``limit_s``
    and no more than leaves the checks after it their estimates — but never less than
    its own estimate (the checks after it may then be skipped in turn).
    """
    if left < check.estimate_s:
        return None
    reserve = sum(c.estimate_s for c in later)
    return min(check.limit_s, max(check.estimate_s, left - reserve))


def result(
    check: Check,
    status: str,
    seconds: float,
    limit_s: float,
    *,
    reason: str | None = None,
    error: str | None = None,
    trace: str | None = None,
    details: dict | None = None,
    failures: Sequence[str] = (),
    notes: Sequence[str] = (),
    output_tail: str | None = None,
) -> dict:
    """One check's result, as the report holds it."""
    return {
        "name": check.name,
        "title": check.title,
        "status": status,
        "seconds": round(seconds, 2),
        "limit_s": round(limit_s, 1),
        "reason": reason,
        "error": error,
        "traceback": trace,
        "failures": list(failures),
        "notes": list(notes),
        "details": details or {},
        "output_tail": output_tail,
    }


# ----------------------------------------------------------------------------- one check


def _resolve(target: str) -> Callable[[Context], Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_inline(
    check: Check,
    config: GpuCheckConfig,
    limit_s: float,
    scratch: Path,
    save: Callable[[dict], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Run ``check`` in this process; whatever it raises becomes its result (``Skip``:
    skipped; anything else: failed, with the error and the traceback's end)."""
    start = clock()
    ctx = Context(config, start + limit_s, scratch, save, clock)
    status, reason, error, trace = "ok", None, None, None
    try:
        _resolve(check.target)(ctx)
    except KeyboardInterrupt:
        raise
    except Skip as skip:
        status, reason = "skipped", str(skip)
    except BaseException as err:  # noqa: BLE001 - pytest.skip's and SystemExit too: a check never stops the run
        status, error, trace = "failed", f"{type(err).__name__}: {err}", traceback.format_exc()[-TAIL_CHARS:]
    if status == "ok" and ctx.failures:
        status = "failed"
        reason = f"{len(ctx.failures)} problem(s): {ctx.failures[0]}"
    return result(check, status, clock() - start, limit_s, reason=reason, error=error, trace=trace, **ctx.partial())


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of the file at ``path`` (``""`` where it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * chars))
            return f.read().decode(errors="replace")[-chars:]
    except OSError:
        return ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _child_command(check: Check, config: GpuCheckConfig, limit_s: float, result_path: Path, scratch: Path) -> list:
    code = "import sys; from fmae.benchmarking.gpu.runner import child_main; sys.exit(child_main(sys.argv[1:]))"
    return [
        sys.executable,
        "-c",
        code,
        check.name,
        check.title,
        check.target,
        repr(limit_s),
        json.dumps(dataclasses.asdict(config)),
        str(result_path),
        str(scratch),
    ]


def _lost(check: Check, got: dict, seconds: float, limit_s: float, rc: int | None, killed: bool, log: str) -> dict:
    """The failed result of a check whose process was killed or ended without reporting, with what it had saved."""
    partial = {k: got.get(k) or default for k, default in (("details", {}), ("failures", []), ("notes", []))}
    if killed:
        error = (
            f"killed after {seconds:.0f} s: it ran past its {limit_s:.0f} s limit (+{GRACE_S:.0f} s grace); "
            f"what it had saved is kept"
        )
    else:
        how = f"status {rc}"
        if rc is not None and rc < 0:
            how = f"signal {signal.Signals(-rc).name}" if -rc in signal.valid_signals() else f"signal {-rc}"
        error = f"its process ended ({how}) before reporting a result"
    return result(check, "failed", seconds, limit_s, error=error, output_tail=log, **partial)


def run_in_child(check: Check, config: GpuCheckConfig, limit_s: float, scratch: Path) -> dict:
    """Run ``check`` in a fresh Python process, killed ``GRACE_S`` after ``limit_s``.

    A process that dies or is killed leaves a failed result with its exit status and the
    end of its output, and with the details it had saved so far.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    result_path, log_path = scratch / f"{check.name}.result.json", scratch / f"{check.name}.log"
    result_path.unlink(missing_ok=True)
    start = time.monotonic()
    killed = False
    with open(log_path, "wb") as log:
        proc = start_group(
            _child_command(check, config, limit_s, result_path, scratch), log, source_root() or os.getcwd()
        )
        try:
            rc = proc.wait(timeout=limit_s + GRACE_S)
        except subprocess.TimeoutExpired:
            killed = True
            kill_group(proc)
            rc = proc.returncode
    seconds = time.monotonic() - start
    got = _read_json(result_path) or {}
    log_tail = tail(log_path)
    if got.get("final") and not killed:
        got.pop("final", None)
        got["seconds"] = round(seconds, 2)
        if got.get("status") == "failed":
            got["output_tail"] = log_tail
        return got
    return _lost(check, got, seconds, limit_s, rc, killed, log_tail)


def child_main(argv: list[str]) -> int:
    """The check's process: run it, write its result (and partial results as it goes) as JSON."""
    name, title, target, limit, config_json, result_path, scratch = argv
    check = Check(name, title, 0.0, float(limit), target)
    config = GpuCheckConfig(**json.loads(config_json))
    path = Path(result_path)

    def save(partial: dict) -> None:
        write_json(path, jsonable({"final": False, **partial}))

    got = run_inline(check, config, float(limit), Path(scratch), save)
    write_json(path, jsonable({"final": True, **got}))
    return 0


# ----------------------------------------------------------------------------- every check


def _run_one(
    check: Check, config: GpuCheckConfig, limit: float, scratch: Path, isolate: bool, clock: Callable[[], float]
) -> dict:
    t0 = clock()
    try:
        if isolate and check.own_process:
            return run_in_child(check, config, limit, scratch)
        return run_inline(check, config, limit, scratch, clock=clock)
    except Exception as err:  # the runner's own trouble: recorded, and the next check still runs
        return result(
            check,
            "failed",
            clock() - t0,
            limit,
            error=f"the runner failed: {err!r}",
            trace=traceback.format_exc()[-TAIL_CHARS:],
        )


def run_checks(
    checks: Sequence[Check],
    config: GpuCheckConfig,
    budget_s: float,
    scratch: Path,
    *,
    isolate: bool = True,
    clock: Callable[[], float] = time.monotonic,
    on_result: Callable[[list[dict]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run ``checks`` in order within ``budget_s`` seconds (see :func:`allot`); one result each.

    ``isolate``: each check that asks for it in its own process (:func:`run_in_child`),
    else all in this one. ``on_result`` is called with the results so far after each.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    start = clock()
    results: list[dict] = []
    for i, check in enumerate(checks):
        left = budget_s - (clock() - start)
        limit = allot(left, check, checks[i + 1 :])
        if limit is None:
            got = result(
                check,
                "skipped",
                0.0,
                0.0,
                reason=f"out of budget: it needs about {check.estimate_s:.0f} s and "
                f"{max(left, 0.0):.0f} s of the {budget_s:.0f} s budget were left",
            )
        else:
            log(f"[{i + 1}/{len(checks)}] {check.name}: {check.title} (up to {limit:.0f} s)")
            got = _run_one(check, config, limit, scratch, isolate, clock)
        results.append(got)
        summary = summary_line(got)
        log(f"    {check.name}: {got['status']}" + (f" ({summary})" if summary else "") + f" in {got['seconds']:.0f} s")
        if on_result is not None:
            on_result(results)
    return results
