"""Every check that needs a GPU, in one command: ``python -m fmae.bench gpu --out DIR``.

Four checks, run in order, each in a Python process of its own (a crashed or hung
kernel takes only its own check down) and each with a time limit, all inside one total
budget (``--budget``, 480 s by default):

1. ``tests``: the GPU tests — ``pytest tests/ops`` (every CUDA and Triton kernel against
   its reference, on the GPU there) and the test files outside ``tests/ops`` that look
   for CUDA (:func:`pytest_targets`), in one pytest process; pass/fail counts, the
   failures and the end of the output; the whole log as ``gpu_tests.log``.
2. ``attention``: ``fmae.ops.attention``'s ``triton``, ``sdpa``, ``xformers`` and
   ``reference`` backends at ViT-B's shapes (``[B, heads, N, 64]``: the encoder's 12 heads
   over 157 tokens (ratio 0.9) and 784 (ratio 0.5), the decoder's 6 heads over 1568), in
   bf16 and fp16, forward and forward + backward: the largest error against the float32
   reference computed from the same inputs, and the time per call (CUDA events, after
   warm-up). xformers is skipped, with the reason, where it does not import.
3. ``step``: the ViT-B pre-training step in bf16 (16×224², ``--step-batch-size`` clips,
   ``--step-ratio``), HF ``transformers``' ``VideoMAEForPreTraining``
   (:func:`fmae.benchmarking.step.hf_videomae_step`, as the benchmarks build it) against FMAE's step
   (:func:`fmae.benchmarking.step.bench_step`: the same work with a random mask and no
   discriminator, and the full facial-mask + adversarial step) at decoder keep 1 and 0.5.
4. ``dali``: DALI decoding on the GPU against the PyTorch loader: synthetic 224² clips
   (the cache's MJPEG, and the same frames as H.264 for comparison) through
   ``fmae.data.make_loader(backend="dali", device="cuda")`` and ``backend="torch"``: item
   order, frames and region maps equal, mean |Δ| of the pixels, time per epoch.

Budget: a check starts only if the budget has its ``estimate_s`` left, and runs for at
most its ``limit_s``, less what the checks after it need at least (:func:`allot`); one
that does not fit is skipped with the reason. Checks also watch their own deadline and
leave the cases they cannot finish as skipped. A check's process that outlives its limit
is killed; what it had saved so far is kept.

Results: ``gpu_check.json`` (every check's status — ``ok``, ``failed`` or ``skipped`` —
reason, error, numbers; the GPU, driver, torch/CUDA/Triton and package versions; the
wall time) and ``gpu_check.md``, its summary, rewritten after each check so that a run
cut short still leaves what it did. Without CUDA (or with ``--dry-run``) nothing is run:
the command says why and lists what it would run.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from fmae.runtime.config import setting

CHECK_NAMES: tuple[str, ...] = ("tests", "attention", "step", "dali")
JSON_NAME, MD_NAME, TESTS_LOG = "gpu_check.json", "gpu_check.md", "gpu_tests.log"
GRACE_S = 30.0
"""How long a check's process may run past its limit (to finish a case and report) before it is killed."""
TAIL_CHARS = 6000
REPORT_VERSION = 1


@dataclass
class GpuCheckConfig:
    """What ``python -m fmae.bench gpu`` runs and where it writes."""

    out: str = setting("runs/gpu_check", "folder for gpu_check.json, gpu_check.md and the tests' log")
    budget: float = setting(
        480.0, "total seconds for the checks; a check that no longer fits is skipped, with the reason"
    )
    checks: str = setting(",".join(CHECK_NAMES), f"comma-separated checks to run, of {','.join(CHECK_NAMES)}")
    dry_run: bool = setting(False, "only list what would run (what happens anyway without CUDA)")
    attention_batch_sizes: str = setting("2,8", "comma-separated batch sizes of the attention shapes")
    step_batch_size: int = setting(8, "clips per pre-training step, FMAE and HF alike")
    step_ratio: float = setting(0.9, "masking ratio of the pre-training steps")
    step_steps: int = setting(10, "timed pre-training steps per case (after 3 untimed)")

    def __post_init__(self) -> None:
        names = self.selected()
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown or not names:
            raise ValueError(f"checks must be a comma-separated list of {CHECK_NAMES}, got {self.checks!r}")
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget}")
        self.batch_sizes()
        if not 0.0 < self.step_ratio < 1.0:
            raise ValueError(f"step_ratio must be in (0, 1), got {self.step_ratio}")
        if self.step_batch_size < 1 or self.step_steps < 1:
            raise ValueError(
                f"step_batch_size and step_steps must be >= 1, got {self.step_batch_size}, {self.step_steps}"
            )

    def selected(self) -> list[str]:
        """The checks to run, in :data:`CHECK_NAMES`' order, each once."""
        asked = [s.strip() for s in str(self.checks).split(",") if s.strip()]
        return [n for n in CHECK_NAMES if n in asked] + [n for n in asked if n not in CHECK_NAMES]

    def batch_sizes(self) -> list[int]:
        try:
            sizes = [int(s) for s in str(self.attention_batch_sizes).split(",") if s.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"attention_batch_sizes must be positive integers like 2,8, got {self.attention_batch_sizes!r}"
            )
        return sizes


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


@dataclass(frozen=True)
class Check:
    """One check: ``target`` (``"module:function"``) is called with a :class:`Context`."""

    name: str
    title: str
    estimate_s: float
    """The least time worth starting it with."""
    limit_s: float
    """The most time it may take."""
    target: str
    own_process: bool = True
    """Run it in a fresh Python process; ``tests`` only starts pytest, so it runs in the runner's."""


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "tests",
            "the GPU tests, with pytest",
            60.0,
            240.0,
            "fmae.benchmarking.gpu_check:check_tests",
            own_process=False,
        ),
        Check(
            "attention",
            "attention backends at ViT-B's shapes",
            45.0,
            150.0,
            "fmae.benchmarking.gpu_check:check_attention",
        ),
        Check(
            "step",
            "ViT-B pre-training step, FMAE against HF VideoMAE",
            60.0,
            150.0,
            "fmae.benchmarking.gpu_check:check_step",
        ),
        Check(
            "dali",
            "DALI GPU decoding against the PyTorch loader",
            40.0,
            120.0,
            "fmae.benchmarking.gpu_check:check_dali",
        ),
    )
}


# ----------------------------------------------------------------------------- the runner


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


def _result(
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
    return _result(check, status, clock() - start, limit_s, reason=reason, error=error, trace=trace, **ctx.partial())


def child_env() -> dict[str, str]:
    """The checks' environment: Triton compiled for the GPU, never its CPU interpreter."""
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def source_root() -> Path | None:
    """The source checkout (the folder with ``tests/ops``): the working folder, else the one above the package."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "tests" / "ops").is_dir():
            return base
    return None


def _kill_group(proc: subprocess.Popen) -> None:
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


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
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


def run_in_child(check: Check, config: GpuCheckConfig, limit_s: float, scratch: Path) -> dict:
    """Run ``check`` in a fresh Python process, killed ``GRACE_S`` after ``limit_s``.

    A process that dies or is killed leaves a failed result with its exit status and the
    end of its output, and with the details it had saved so far.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    result_path, log_path = scratch / f"{check.name}.result.json", scratch / f"{check.name}.log"
    result_path.unlink(missing_ok=True)
    code = "import sys; from fmae.benchmarking.gpu_check import _child_main; sys.exit(_child_main(sys.argv[1:]))"
    cmd = [
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
    start = time.monotonic()
    killed = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=source_root() or os.getcwd(),
            env=child_env(),
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=limit_s + GRACE_S)
        except subprocess.TimeoutExpired:
            killed = True
            _kill_group(proc)
            rc = proc.returncode
    seconds = time.monotonic() - start
    got = _read_json(result_path) or {}
    tail = _tail(log_path)
    if got.get("final") and not killed:
        got.pop("final", None)
        got["seconds"] = round(seconds, 2)
        if got.get("status") == "failed":
            got["output_tail"] = tail
        return got
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
    return _result(check, "failed", seconds, limit_s, error=error, output_tail=tail, **partial)


def _child_main(argv: list[str]) -> int:
    """The check's process: run it, write its result (and partial results as it goes) as JSON."""
    name, title, target, limit, config_json, result_path, scratch = argv
    check = Check(name, title, 0.0, float(limit), target)
    config = GpuCheckConfig(**json.loads(config_json))
    path = Path(result_path)

    def save(partial: dict) -> None:
        _write_json(path, {"final": False, **partial})

    result = run_inline(check, config, float(limit), Path(scratch), save)
    _write_json(path, {"final": True, **result})
    return 0


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
            result = _result(
                check,
                "skipped",
                0.0,
                0.0,
                reason=f"out of budget: it needs about {check.estimate_s:.0f} s and "
                f"{max(left, 0.0):.0f} s of the {budget_s:.0f} s budget were left",
            )
        else:
            log(f"[{i + 1}/{len(checks)}] {check.name}: {check.title} (up to {limit:.0f} s)")
            t0 = clock()
            try:
                if isolate and check.own_process:
                    result = run_in_child(check, config, limit, scratch)
                else:
                    result = run_inline(check, config, limit, scratch, clock=clock)
            except Exception as err:  # the runner's own trouble: recorded, and the next check still runs
                result = _result(
                    check,
                    "failed",
                    clock() - t0,
                    limit,
                    error=f"the runner failed: {err!r}",
                    trace=traceback.format_exc()[-TAIL_CHARS:],
                )
        results.append(result)
        log(
            f"    {check.name}: {result['status']}"
            + (f" ({summary_line(result)})" if summary_line(result) else "")
            + f" in {result['seconds']:.0f} s"
        )
        if on_result is not None:
            on_result(results)
    return results


# ----------------------------------------------------------------------------- the command


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


def _command_line(config: GpuCheckConfig) -> str:
    """``python -m fmae.bench gpu`` with ``--out`` and the settings that differ from the defaults."""
    parts = ["python -m fmae.bench gpu"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name != "dry_run" and (f.name == "out" or value != f.default):
            parts.append(f"--{f.name.replace('_', '-')} {value}")
    return " ".join(parts)


def plan_lines(config: GpuCheckConfig) -> list[str]:
    """What each selected check would run, for the dry run."""
    root = source_root()
    lines = []
    for i, name in enumerate(config.selected(), 1):
        c = CHECKS[name]
        lines.append(f"  {i}. {name}: {c.title} (needs about {c.estimate_s:.0f} s, at most {c.limit_s:.0f} s)")
        lines += [f"       {line}" for line in _PLANS[name](config, root)]
    return lines


def _plan_tests(config: GpuCheckConfig, root: Path | None) -> list[str]:
    if root is None:
        return ["pytest tests/ops ... (no source checkout here: it would be skipped)"]
    return [
        " ".join(["python", *pytest_command(root)[1:]]) + f"  (log: {Path(config.out) / TESTS_LOG})",
        "CUDA and Triton kernels against their references on the GPU; pass/fail counts and the failures",
    ]


def _plan_attention(config: GpuCheckConfig, root: Path | None) -> list[str]:
    shapes = ", ".join(f"{n} [{b},{h},{t},{d}]" for n, b, h, t, d in attention_shapes(config.batch_sizes()))
    return [
        f"fmae.ops.attention backends {', '.join(ATTENTION_BACKENDS)} (xformers skipped where it does not "
        "import), bf16 and fp16, forward and forward+backward",
        f"shapes {shapes}",
        "max error against the float32 reference; ms per call (CUDA events, after warm-up)",
    ]


def _plan_step(config: GpuCheckConfig, root: Path | None) -> list[str]:
    cases = ", ".join(f"{c['impl']} keep {c['decoder_keep']:g}" for c in step_cases(True))
    return [
        f"ViT-B, bf16, 16x224^2, B={config.step_batch_size}, ratio {config.step_ratio}, "
        f"{config.step_steps} timed steps after 3: {cases}",
        "HF transformers.VideoMAEForPreTraining from fmae.benchmarking.step.hf_videomae_step; FMAE through "
        "fmae.benchmarking.step.bench_step (decoder keep 0.5 only where StepBenchConfig has decoder_keep)",
    ]


def _plan_dali(config: GpuCheckConfig, root: Path | None) -> list[str]:
    return [
        f"{DALI_CLIPS} synthetic 224^2 clips of {DALI_VIDEO_FRAMES} frames as MJPEG (the cache's codec) and "
        f"H.264, {DALI_REPEATS} windows each; make_loader(backend='dali', device='cuda') against "
        "backend='torch'",
        f"batches of {DALI_BATCH} x {DALI_FRAMES} frames (stride {DALI_STRIDE}): same items, frames and region "
        "maps, mean |Δ| of luma (checked) and RGB, seconds per epoch",
    ]


_PLANS: dict[str, Callable[[GpuCheckConfig, Path | None], list[str]]] = {
    "tests": _plan_tests,
    "attention": _plan_attention,
    "step": _plan_step,
    "dali": _plan_dali,
}


def dry_run_text(config: GpuCheckConfig, no_cuda: str | None = None) -> str:
    """The dry run's message: why nothing ran, and what would."""
    head = f"No CUDA here: {no_cuda}. Nothing was run." if no_cuda is not None else "Dry run: nothing was run."
    return "\n".join(
        [
            head,
            f"On a CUDA machine `{_command_line(config)}` runs these checks, each in its own process with a time "
            f"limit, within a {config.budget:.0f} s budget (a check that no longer fits is skipped, with the reason):",
            *plan_lines(config),
            f"and writes {Path(config.out) / JSON_NAME} and {MD_NAME} (each check's status ok/failed/skipped and its "
            "numbers, the GPU, torch/CUDA/Triton versions, the wall time).",
        ]
    )


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001
        return None


def _safely(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        return f"unknown ({type(err).__name__}: {err})"


def _driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment() -> dict[str, Any]:
    """The machine and the versions the results depend on; each field on its own, so one
    that cannot be read says so and the rest are still there."""
    import fmae

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fmae": fmae.__version__,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        env["cudnn"] = _safely(lambda: torch.backends.cudnn.version())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_count"] = torch.cuda.device_count()
            env["gpu_capability"] = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
            env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            env["gpu_multiprocessors"] = props.multi_processor_count
            env["bf16_supported"] = _safely(torch.cuda.is_bf16_supported)
        else:
            env["gpu"] = None
    except Exception as err:  # noqa: BLE001
        env["torch"] = f"unknown ({err})"
    env["driver"] = _safely(_driver)
    env["triton"] = _version("triton")
    env["cuda_extension_built"] = _safely(
        lambda: importlib.import_module("fmae.ops._backend").cuda_extension() is not None
    )
    env["cpp_extension_built"] = _safely(
        lambda: importlib.import_module("fmae.ops._backend").cpp_extension() is not None
    )
    env["packages"] = {
        name: _version(dist)
        for name, dist in (
            ("transformers", "transformers"),
            ("xformers", "xformers"),
            ("dali", "nvidia-dali-cuda130"),
            ("dali_cuda120", "nvidia-dali-cuda120"),
            ("av", "av"),
            ("numpy", "numpy"),
            ("pytest", "pytest"),
        )
    }
    return env


def summarize(results: Sequence[dict]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for r in results:
        counts[r.get("status", "failed")] = counts.get(r.get("status", "failed"), 0) + 1
    return counts


def run(config: GpuCheckConfig) -> int:
    """The command: run the selected checks and write the report; 1 if any check failed.

    Without CUDA, or with ``dry_run``, print what would run and return 0.
    """
    available, why = cuda_status()
    if config.dry_run or not available:
        print(dry_run_text(config, None if available else why))
        return 0
    out_dir = Path(config.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "fmae_gpu_check": REPORT_VERSION,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command_line(config),
        "budget_s": config.budget,
        "settings": dataclasses.asdict(config),
        "environment": environment(),
        "checks": [],
        "summary": {},
        "wall_s": 0.0,
    }
    print(
        f"GPU check on {report['environment'].get('gpu')}: {', '.join(config.selected())} within "
        f"{config.budget:.0f} s; results in {out_dir}",
        file=sys.stderr,
        flush=True,
    )

    def write(results: list[dict]) -> None:
        report["checks"] = list(results)
        report["summary"] = summarize(results)
        report["wall_s"] = round(time.monotonic() - started, 1)
        try:
            write_report(out_dir, report)
        except Exception as err:  # noqa: BLE001 - the checks go on; the next write may succeed
            print(f"warning: could not write the report to {out_dir}: {err!r}", file=sys.stderr, flush=True)

    write([])
    scratch = Path(tempfile.mkdtemp(prefix="fmae-gpu-check-"))
    try:
        results = run_checks([CHECKS[n] for n in config.selected()], config, config.budget, scratch, on_result=write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write(results)
    print(summary_text(report))
    print(f"wrote {out_dir / JSON_NAME} and {out_dir / MD_NAME}")
    return 1 if report["summary"].get("failed") else 0


# ----------------------------------------------------------------------------- check 1: tests

CUDA_GATED = re.compile(r"torch\.cuda\.is_available\(\)")
OWN_TESTS = "test_gpu_check.py"
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b")


def pytest_targets(root: Path) -> list[str]:
    """``tests/ops`` and the test files beside it that ask for CUDA (``torch.cuda.is_available()``),
    but for this command's own tests (they run nothing on a GPU)."""
    targets = ["tests/ops"] if (root / "tests" / "ops").is_dir() else []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if path.name == OWN_TESTS or "ops" in path.relative_to(root / "tests").parts[:-1]:
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


_PROGRESS = re.compile(r"^(?:\S+\.py\s+)?([.FEsxX]+)\s*(?:\[\s*\d+%\])?$")


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
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=child_env(),
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=max(1.0, limit_s))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
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


def check_tests(ctx: Context) -> None:
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


# ----------------------------------------------------------------------------- shared: timing


def time_calls(
    fn: Callable[[], Any], device: Any, warmup: int = 3, iters: int = 20, target_s: float | None = 0.5
) -> dict[str, Any]:
    """Per-call time of ``fn`` after ``warmup`` untimed calls: the median and the fastest.

    On CUDA, events are recorded between the calls (no host synchronisation between
    them); elsewhere the wall clock. ``target_s``: fewer timed calls (at least 3) when
    ``iters`` of them would take longer. Returns ``ms``, ``ms_min``, ``calls`` and
    ``last``, the last call's result.
    """
    import torch

    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    last = None
    for _ in range(warmup):
        last = fn()
    sync()
    if target_s is not None:
        t0 = time.perf_counter()
        last = fn()
        sync()
        one = time.perf_counter() - t0
        iters = max(3, min(iters, int(target_s / max(one, 1e-6))))
    if cuda:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(iters + 1)]
        events[0].record()
        for i in range(iters):
            last = fn()
            events[i + 1].record()
        sync()
        times = [a.elapsed_time(b) for a, b in zip(events, events[1:])]
    else:
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            last = fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return {"ms": statistics.median(times), "ms_min": min(times), "calls": iters, "last": last}


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _error_line(err: BaseException, chars: int = 700) -> str:
    """``Type: message`` on one line (a multi-line message's lines joined), at most about ``chars``
    long: its start and its end, where libraries such as DALI say what went wrong."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {' | '.join(lines)}"
    return text if len(text) <= chars else f"{text[:200]} … {text[-(chars - 200) :]}"


def _require_cuda() -> None:
    ok, why = cuda_status()
    if not ok:
        raise Skip(f"no CUDA: {why}")


# ----------------------------------------------------------------------------- check 2: attention

ATTENTION_BACKENDS: tuple[str, ...] = ("reference", "sdpa", "triton", "xformers")
ATTENTION_MODES: tuple[str, ...] = ("fwd", "fwd+bwd")
ATTENTION_TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-3}
"""Largest error allowed, relative to the reference's largest magnitude (about 8 ulps of bf16 or fp16)."""


def attention_shapes(batch_sizes: Sequence[int], head_dim: int = 64) -> list[tuple[str, int, int, int, int]]:
    """``(name, B, heads, N, head_dim)`` of ViT-B's attention: the encoder at ratios 0.9 and 0.5, the decoder."""
    shapes = []
    for b in batch_sizes:
        shapes += [
            ("encoder r0.9", b, 12, 157, head_dim),
            ("encoder r0.5", b, 12, 784, head_dim),
            ("decoder", b, 6, 1568, head_dim),
        ]
    return shapes


def attention_backends(device: Any) -> tuple[list[str], dict[str, str]]:
    """The backends that can run on ``device`` and, for the others, why not."""
    import torch

    from fmae.ops import _backend

    attention_module = importlib.import_module("fmae.ops.attention")  # the module; fmae.ops.attention is the function
    device = torch.device(device)
    usable, skipped = ["reference", "sdpa"], {}
    try:
        _backend.choose("triton", device, supported=("triton",))
        usable.append("triton")
    except RuntimeError as err:
        skipped["triton"] = str(err)
    if not attention_module._XFORMERS:
        skipped["xformers"] = "xformers is not installed"
    elif device.type != "cuda":
        skipped["xformers"] = "xformers runs on CUDA tensors only"
    else:
        try:
            importlib.import_module("xformers.ops")
            usable.append("xformers")
        except Exception as err:  # noqa: BLE001 - a broken build raises anything
            skipped["xformers"] = f"xformers does not import: {_error_line(err)}"
    return usable, skipped


def measure_attention(
    ctx: Context,
    device: Any,
    shapes: Sequence[tuple[str, int, int, int, int]],
    dtypes: Sequence[Any],
    backends: Sequence[str] = ATTENTION_BACKENDS,
    modes: Sequence[str] = ATTENTION_MODES,
    warmup: int = 3,
    iters: int = 20,
) -> None:
    """Error and time of each backend × shape × dtype × mode into ``ctx.details["cases"]``.

    Errors are the largest absolute difference from :func:`fmae.ops.attention_reference`
    in float32 on the same (low-precision) inputs, for the output and, forward+backward,
    for dq, dk, dv; ``rel_err`` is the largest of them over the reference's largest
    magnitude, checked against :data:`ATTENTION_TOLERANCE`.
    """
    import torch

    from fmae.ops import attention, attention_reference

    device = torch.device(device)
    usable, skipped = attention_backends(device)
    usable = [b for b in backends if b in usable]
    ctx.details["backends"] = usable
    ctx.details["backends_skipped"] = {b: why for b, why in skipped.items() if b in backends}
    rows: list[dict] = ctx.details.setdefault("cases", [])

    def call(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if backend == "reference":
            return attention_reference(q, k, v)
        return attention(q, k, v, backend=backend)

    def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.float() - b.float()).abs().max())

    for name, b, heads, n, d in shapes:
        for dtype in dtypes:
            dname = str(dtype).removeprefix("torch.")
            base = {"shape": name, "B": b, "heads": heads, "N": n, "head_dim": d, "dtype": dname}
            if ctx.left() < 5.0:
                rows += [
                    {**base, "backend": bk, "mode": m, "status": "skipped", "reason": "out of time"}
                    for bk in usable
                    for m in modes
                ]
                continue
            try:
                g = torch.Generator().manual_seed(b * 100003 + n)
                q, k, v, dout = (torch.randn(b, heads, n, d, generator=g).to(device, dtype) for _ in range(4))
                leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
                ref = attention_reference(*leaves)
                ref_grads = torch.autograd.grad(ref, leaves, dout.float())
                ref = ref.detach()
                scale = {"out": float(ref.abs().max())}
                scale.update({f"d{x}": float(t.abs().max()) for x, t in zip("qkv", ref_grads)})
            except Exception as err:  # noqa: BLE001
                ctx.failures.append(f"inputs for {name} B={b} {dname}: {_error_line(err)}")
                rows.append({**base, "status": "failed", "error": _error_line(err)})
                _free_memory()
                continue
            for backend in usable:
                for mode in modes:
                    row = {**base, "backend": backend, "mode": mode}
                    if ctx.left() < 3.0:
                        rows.append({**row, "status": "skipped", "reason": "out of time"})
                        continue
                    try:
                        if mode == "fwd":
                            with torch.no_grad():
                                errors = {"out": maxdiff(call(backend, q, k, v), ref)}

                            def fn() -> Any:
                                with torch.no_grad():
                                    return call(backend, q, k, v)
                        else:
                            ql, kl, vl = (t.detach().requires_grad_() for t in (q, k, v))
                            out = call(backend, ql, kl, vl)
                            grads = torch.autograd.grad(out, (ql, kl, vl), dout)
                            errors = {"out": maxdiff(out.detach(), ref)}
                            errors.update({f"d{x}": maxdiff(gr, rg) for x, gr, rg in zip("qkv", grads, ref_grads)})
                            del out, grads

                            def fn() -> Any:
                                return torch.autograd.grad(call(backend, ql, kl, vl), (ql, kl, vl), dout)

                        timing = time_calls(fn, device, warmup, iters)
                        timing.pop("last", None)
                        rel = max(errors[key] / max(scale[key], 1e-12) for key in errors)
                        row.update(
                            status="ok",
                            ms=round(timing["ms"], 4),
                            ms_min=round(timing["ms_min"], 4),
                            calls=timing["calls"],
                            max_err={k2: float(f"{e:.4g}") for k2, e in errors.items()},
                            rel_err=float(f"{rel:.4g}"),
                        )
                        tol = ATTENTION_TOLERANCE.get(dname, 1e-3)
                        if not math.isfinite(rel) or rel > tol:
                            row["status"] = "failed"
                            row["error"] = f"relative error {rel:.3g} over the tolerance {tol:g}"
                            ctx.failures.append(f"{backend} {mode} {name} B={b} {dname}: {row['error']}")
                    except Exception as err:  # noqa: BLE001
                        row.update(status="failed", error=_error_line(err))
                        ctx.failures.append(f"{backend} {mode} {name} B={b} {dname}: {row['error']}")
                        _free_memory()
                    rows.append(row)
                    ctx.save()
            q = k = v = dout = leaves = ref = ref_grads = None  # free the block's tensors before the next
            _free_memory()
    _attention_speedups(rows)


def _attention_speedups(rows: list[dict]) -> None:
    """``speedup_vs_sdpa`` of each timed row: SDPA's median time over its own, same shape, dtype and mode."""
    sdpa = {
        (r["shape"], r["B"], r["dtype"], r["mode"]): r["ms"] for r in rows if r.get("backend") == "sdpa" and r.get("ms")
    }
    for r in rows:
        key = (r.get("shape"), r.get("B"), r.get("dtype"), r.get("mode"))
        if r.get("ms") and key in sdpa:
            r["speedup_vs_sdpa"] = round(sdpa[key] / r["ms"], 3)


def check_attention(ctx: Context) -> None:
    _require_cuda()
    import torch

    shapes = attention_shapes(ctx.config.batch_sizes())
    ctx.details["settings"] = {"warmup": 3, "iters": 20, "timing": "CUDA events, median per call"}
    measure_attention(ctx, "cuda", shapes, (torch.bfloat16, torch.float16))


# ----------------------------------------------------------------------------- check 3: the step


def has_decoder_keep() -> bool:
    """Whether :class:`fmae.benchmarking.step.StepBenchConfig` takes ``decoder_keep`` (decoder masking)."""
    from fmae.benchmarking.step import StepBenchConfig

    return "decoder_keep" in {f.name for f in dataclasses.fields(StepBenchConfig)}


def step_cases(keep_available: bool) -> list[dict[str, Any]]:
    """HF's step, then FMAE's with the same work (random mask, no discriminator) and the full
    FMAE step (facial mask, λ = 0.1), each at decoder keep 1 and 0.5; the 0.5 cases carry
    ``skip`` where decoder masking is not available."""
    cases: list[dict[str, Any]] = [
        {"impl": "hf_videomae", "strategy": "random", "adv_weight": 0.0, "decoder_keep": 1.0}
    ]
    for impl, strategy, adv in (("fmae_random_mae", "random", 0.0), ("fmae_facial_adv", "facial", 0.1)):
        for keep in (1.0, 0.5):
            case: dict[str, Any] = {"impl": impl, "strategy": strategy, "adv_weight": adv, "decoder_keep": keep}
            if keep != 1.0 and not keep_available:
                case["skip"] = "decoder_keep not available"
            cases.append(case)
    return cases


_STEP_KEYS = (
    "s_per_step",
    "s_per_step_min",
    "clips_per_s",
    "tflops",
    "flops_per_step",
    "peak_mem_mb",
    "first_step_s",
    "loss",
    "dtype",
    "batch_size",
    "ratio",
)


def _fmae_step(
    case: dict,
    device: Any,
    model: str,
    img_size: int,
    frames: int,
    batch_size: int,
    ratio: float,
    steps: int,
    warmup: int,
    dtype: str,
    keep_available: bool,
) -> dict:
    from fmae.benchmarking.step import StepBenchConfig, bench_step

    kw: dict[str, Any] = dict(
        model=model,
        img_size=img_size,
        frames=frames,
        ratio=ratio,
        strategy=case["strategy"],
        adv_weight=case["adv_weight"],
        batch_size=batch_size,
        dtype=dtype,
        steps=steps,
        warmup=warmup,
        device=str(device),
    )
    if keep_available:
        kw["decoder_keep"] = case["decoder_keep"]
    result = bench_step(StepBenchConfig(**kw), progress=False)
    return {key: result.get(key) for key in _STEP_KEYS}


def _hf_step(
    device: Any,
    model: str,
    img_size: int,
    frames: int,
    batch_size: int,
    ratio: float,
    steps: int,
    warmup: int,
    dtype: str,
) -> dict:
    """HF's step as the benchmarks build it (:func:`fmae.benchmarking.step.hf_videomae_step`: random
    mask, fused AdamW), timed here."""
    import torch

    from fmae.benchmarking.step import PeakMemory, hf_videomae_step
    from fmae.model import get_config
    from fmae.model.flops import step_flops

    if importlib.util.find_spec("transformers") is None:
        raise Skip("transformers is not installed")
    device = torch.device(device)
    config = get_config(f"fmae_vit_{model}", img_size=img_size, num_frames=frames)
    compute = torch.bfloat16 if dtype == "bf16" else torch.float32
    step = hf_videomae_step(config, ratio, batch_size, compute, compiled=False, device=device)
    memory = PeakMemory(device)
    memory.set_base()
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first = time.perf_counter() - t0
    memory.reset_peak()
    timing = time_calls(step, device, warmup=max(warmup - 1, 0), iters=steps, target_s=None)
    peak, _ = memory.read()
    s = timing["ms"] / 1e3
    flops = step_flops(config, batch_size, ratio, "random", 0.0).total
    return {
        "s_per_step": s,
        "s_per_step_min": timing["ms_min"] / 1e3,
        "clips_per_s": batch_size / s,
        "tflops": flops / s / 1e12,
        "flops_per_step": flops,
        "peak_mem_mb": round(peak, 1),
        "first_step_s": first,
        "loss": float(timing["last"]),
        "dtype": dtype,
        "batch_size": batch_size,
        "ratio": ratio,
    }


def measure_steps(
    ctx: Context,
    device: Any,
    model: str = "base",
    img_size: int = 224,
    frames: int = 16,
    batch_size: int = 8,
    ratio: float = 0.9,
    steps: int = 10,
    warmup: int = 3,
    dtype: str = "bf16",
) -> None:
    """Each of :func:`step_cases` into ``ctx.details["cases"]``, with FMAE's speed-up over HF's step."""
    keep_available = has_decoder_keep()
    ctx.details["decoder_keep_available"] = keep_available
    ctx.details["settings"] = {
        "model": f"fmae_vit_{model}",
        "img_size": img_size,
        "frames": frames,
        "batch_size": batch_size,
        "ratio": ratio,
        "steps": steps,
        "warmup": warmup,
        "dtype": dtype,
        "device": str(device),
    }
    rows: list[dict] = ctx.details.setdefault("cases", [])
    for case in step_cases(keep_available):
        row = {k: v for k, v in case.items() if k != "skip"}
        if "skip" in case:
            rows.append({**row, "status": "skipped", "reason": case["skip"]})
            continue
        if ctx.left() < 15.0:
            rows.append({**row, "status": "skipped", "reason": "out of time"})
            continue
        try:
            if case["impl"] == "hf_videomae":
                got = _hf_step(device, model, img_size, frames, batch_size, ratio, steps, warmup, dtype)
            else:
                got = _fmae_step(
                    case, device, model, img_size, frames, batch_size, ratio, steps, warmup, dtype, keep_available
                )
            row.update(status="ok", **got)
            if not math.isfinite(float(got.get("loss", float("nan")))):
                row["status"] = "failed"
                row["error"] = f"non-finite loss {got.get('loss')}"
                ctx.failures.append(f"{case['impl']} keep {case['decoder_keep']:g}: {row['error']}")
        except Skip as skip:
            row.update(status="skipped", reason=str(skip))
        except Exception as err:  # noqa: BLE001
            row.update(status="failed", error=_error_line(err))
            ctx.failures.append(f"{case['impl']} keep {case['decoder_keep']:g}: {row['error']}")
        rows.append(row)
        _free_memory()
        ctx.save()
    hf = next((r["s_per_step"] for r in rows if r["impl"] == "hf_videomae" and r.get("s_per_step")), None)
    for r in rows:
        if hf and r.get("s_per_step") and r["impl"] != "hf_videomae":
            r["speedup_vs_hf"] = round(hf / r["s_per_step"], 3)


def check_step(ctx: Context) -> None:
    _require_cuda()
    c = ctx.config
    measure_steps(ctx, "cuda", "base", 224, 16, c.step_batch_size, c.step_ratio, c.step_steps, 3, "bf16")


# ----------------------------------------------------------------------------- check 4: DALI

DALI_CLIPS, DALI_VIDEO_FRAMES, DALI_REPEATS = 4, 40, 4
DALI_BATCH, DALI_FRAMES, DALI_STRIDE = 4, 16, 2
DALI_LUMA_TOLERANCE = 2.0
"""Largest mean |Δ| of the luma (0–255) between DALI's and PyAV's decoding of the same file. The
colour channels differ more (decoders upsample 4:2:0 chroma differently: about 1.4 mean |Δ| of
RGB at 224², 4 at 32², on DALI's CPU decoder), so they are reported, not checked."""


def write_h264(path: Path, frames: Any, fps: float = 15.0) -> None:
    """``uint8 [T, H, W, 3]`` RGB frames as H.264 (libx264, 4:2:0, no B-frames, a key frame every 8) in an MP4."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": "8", "bf": "0", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _as_h264(items: Sequence[Any], folder: Path) -> list[Any]:
    """The same videos re-encoded as H.264 ``.mp4`` beside copies of their region maps."""
    import numpy as np

    from fmae.data import ClipItem, read_frames, region_map_path
    from fmae.data.clips import count_frames

    folder.mkdir(parents=True, exist_ok=True)
    out, done = [], {}
    for item in items:
        if item.path not in done:
            dst = folder / f"{Path(item.path).stem}.mp4"
            write_h264(dst, read_frames(item.path, np.arange(count_frames(item.path))))
            shutil.copyfile(region_map_path(item.path), region_map_path(dst))
            done[item.path] = dst
        out.append(ClipItem(done[item.path], item.label, item.start, item.stop))
    return out


def compare_loaders(items: Sequence[Any], device: Any, batch_size: int, num_frames: int, stride: int) -> dict:
    """One epoch of DALI and of the PyTorch loader compared (items, frames, region maps,
    pixels), then a second epoch of each timed."""
    import torch

    from fmae.data import IMAGENET_STD, make_loader

    kw = dict(
        items=list(items),
        batch_size=batch_size,
        num_frames=num_frames,
        stride=stride,
        seed=0,
        shuffle=True,
        with_regions=True,
        device=str(device),
    )
    first: dict[str, list[dict]] = {}
    row: dict[str, Any] = {}
    for backend in ("dali", "torch"):
        loader = make_loader(backend=backend, **kw)
        try:
            t0 = time.perf_counter()
            batches, where = [], set()
            for b in loader:  # the first epoch builds the pipeline: compared, and timed apart
                where.add(str(b["clip"].device))
                batches.append({k: v.detach().to("cpu") for k, v in b.items()})
            row[f"{backend}_first_epoch_s"] = round(time.perf_counter() - t0, 3)
            row[f"{backend}_clip_device"] = ",".join(sorted(where))
            t0 = time.perf_counter()
            clips = 0
            for b in loader:
                clips += int(b["clip"].shape[0])
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        finally:
            del loader
        first[backend] = batches
        row[f"{backend}_epoch_s"] = round(seconds, 3)
        row[f"{backend}_clips_per_s"] = round(clips / seconds, 2) if seconds > 0 else None

    def cat(backend: str, key: str) -> torch.Tensor:
        return torch.cat([b[key] for b in first[backend]])

    problems = []
    row["same_order"] = torch.equal(cat("dali", "index"), cat("torch", "index"))
    row["same_frames"] = torch.equal(cat("dali", "frame_index"), cat("torch", "frame_index"))
    row["same_region_maps"] = torch.equal(cat("dali", "region_map"), cat("torch", "region_map"))
    a, b = cat("dali", "clip").float(), cat("torch", "clip").float()
    row["clip_shape"] = list(a.shape)
    if a.shape != b.shape:
        problems.append(f"clip shapes differ: DALI {tuple(a.shape)}, torch {tuple(b.shape)}")
    else:
        diff = (a - b) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255.0  # in 0-255 pixel units
        luma = (diff * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1, 1)).sum(dim=1)
        row["mean_abs_pixel_diff"] = round(float(diff.abs().mean()), 4)
        row["max_abs_pixel_diff"] = round(float(diff.abs().max()), 2)
        row["mean_abs_luma_diff"] = round(float(luma.abs().mean()), 4)
        if not row["mean_abs_luma_diff"] <= DALI_LUMA_TOLERANCE:
            problems.append(f"mean |luma difference| {row['mean_abs_luma_diff']} over {DALI_LUMA_TOLERANCE}")
    problems += [
        f"{what} differ"
        for what, same in (
            ("item orders", row["same_order"]),
            ("frame indices", row["same_frames"]),
            ("region maps", row["same_region_maps"]),
        )
        if not same
    ]
    if row.get("dali_epoch_s") and row.get("torch_epoch_s"):
        row["dali_speedup"] = round(row["torch_epoch_s"] / row["dali_epoch_s"], 3)
    row["status"] = "failed" if problems else "ok"
    if problems:
        row["error"] = "; ".join(problems)
    return row


def measure_dali(
    ctx: Context,
    device: Any,
    size: int = 224,
    codecs: Sequence[str] = ("mjpeg", "h264"),
    clips: int = DALI_CLIPS,
    video_frames: int = DALI_VIDEO_FRAMES,
    repeats: int = DALI_REPEATS,
    batch_size: int = DALI_BATCH,
    num_frames: int = DALI_FRAMES,
    stride: int = DALI_STRIDE,
) -> None:
    """:func:`compare_loaders` on synthetic clips in each of ``codecs`` into ``ctx.details["variants"]``.

    MJPEG is the clip cache's codec: its failure fails the check. H.264 is there to tell
    a codec problem from a DALI one; its failure is a note.
    """
    from fmae.data import dali_available

    if not dali_available():
        raise Skip("NVIDIA DALI is not installed (pip install nvidia-dali-cuda130)")
    if importlib.util.find_spec("av") is None:
        raise Skip("PyAV (av) is not installed: the synthetic clips can be neither written nor read")
    from fmae.data import ClipItem, SyntheticConfig, ensure_synthetic_daisee, list_clips

    subjects = max(1, clips // 2)
    t0 = time.perf_counter()
    config = SyntheticConfig(
        seed=1,
        num_subjects=subjects,
        clips_per_subject=2,
        num_frames=video_frames,
        size=size,
        split_fractions=(1.0, 0.0, 0.0),
    )
    root = ensure_synthetic_daisee(ctx.scratch / "dali", config)
    videos = [ClipItem(p, level) for p, level in list_clips(root, "Train")]
    items = [it for _ in range(repeats) for it in videos]  # each video several times: other windows, real decoding
    ctx.details["settings"] = {
        "videos": len(videos),
        "items": len(items),
        "size": size,
        "video_frames": video_frames,
        "batch_size": batch_size,
        "num_frames": num_frames,
        "stride": stride,
        "device": str(device),
        "num_workers": 0,
        "generate_s": round(time.perf_counter() - t0, 2),
    }
    variants: dict[str, dict] = ctx.details.setdefault("variants", {})
    for codec in codecs:
        if ctx.left() < 10.0:
            variants[codec] = {"status": "skipped", "reason": "out of time"}
            continue
        try:
            these = items if codec == "mjpeg" else _as_h264(items, ctx.scratch / "h264")
            variants[codec] = compare_loaders(these, device, batch_size, num_frames, stride)
        except Exception as err:  # noqa: BLE001
            variants[codec] = {"status": "failed", "error": _error_line(err)}
        if variants[codec]["status"] == "failed":
            line = f"{codec}: {variants[codec]['error']}"
            (ctx.failures if codec == "mjpeg" else ctx.notes).append(line)
        ctx.save()
        _free_memory()


def check_dali(ctx: Context) -> None:
    _require_cuda()
    measure_dali(ctx, "cuda")


# ----------------------------------------------------------------------------- the report


def _jsonable(obj: Any) -> Any:
    """``obj`` with what strict JSON cannot hold made plain: non-finite floats as strings,
    tuples as lists, anything else unknown as its ``str``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _write_json(path: Path, data: Any) -> None:
    from fmae.runtime.files import write_atomically

    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(_jsonable(data), indent=1) + "\n"))


def write_report(out_dir: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``gpu_check.json`` and ``gpu_check.md`` into ``out_dir`` (atomically); return their paths."""
    from fmae.runtime.files import write_atomically

    out_dir = Path(out_dir)
    json_path, md_path = out_dir / JSON_NAME, out_dir / MD_NAME
    _write_json(json_path, report)
    text = format_markdown(report)
    write_atomically(md_path, lambda tmp: tmp.write_text(text))
    return json_path, md_path


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def summary_line(result: dict) -> str:
    """A few words on a result: its counts or speed-ups, else its reason or error."""
    d = result.get("details") or {}
    try:
        if result.get("name") == "tests" and (d.get("counts") or d.get("counts_so_far")):
            if d.get("counts"):
                return ", ".join(f"{v} {k}" for k, v in d["counts"].items())
            return "stopped: " + ", ".join(f"{v} {k}" for k, v in d["counts_so_far"].items()) + " by then"
        if result.get("name") == "attention" and d.get("cases"):
            timed = [r for r in d["cases"] if r.get("backend") == "triton" and r.get("speedup_vs_sdpa")]
            bad = sum(r.get("status") == "failed" for r in d["cases"])
            text = f"{len(d['cases'])} cases, {bad} failed"
            if timed:
                text += f"; triton/sdpa speed-up median {statistics.median(r['speedup_vs_sdpa'] for r in timed):.2f}x"
            return text
        if result.get("name") == "step" and d.get("cases"):
            parts = [
                f"{r['impl']} keep {r['decoder_keep']:g}: {r['speedup_vs_hf']:.2f}x HF"
                for r in d["cases"]
                if r.get("speedup_vs_hf")
            ]
            return "; ".join(parts) or f"{len(d['cases'])} cases"
        if result.get("name") == "dali" and d.get("variants"):
            return "; ".join(
                f"{k} {v.get('status')}" + (f" ({v['dali_speedup']:.2f}x torch)" if v.get("dali_speedup") else "")
                for k, v in d["variants"].items()
            )
    except Exception:  # noqa: BLE001 - a summary never breaks the report
        pass
    return str(result.get("reason") or result.get("error") or "")[:200]


def _md_tests(d: dict) -> list[str]:
    lines = [
        f"`{d.get('command', '')}` — exit status {_fmt(d.get('returncode'))}"
        + (" (stopped: out of time)" if d.get("timed_out") else "")
        + f", {_fmt(d.get('seconds'))} s",
        "",
    ]
    for key, what in (("counts", "Counts"), ("counts_so_far", "Counts when it was stopped")):
        if d.get(key):
            lines += [f"{what}:", "", *_table(list(d[key]), [list(d[key].values())]), ""]
    if d.get("problems"):
        lines += ["Failures and errors:", "", *[f"- `{p}`" for p in d["problems"]], ""]
    if d.get("output_tail"):
        lines += [
            "<details><summary>end of the output</summary>",
            "",
            "```",
            d["output_tail"][-3000:],
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def _md_attention(d: dict) -> list[str]:
    lines = []
    if d.get("backends_skipped"):
        lines += [f"- {b} skipped: {why}" for b, why in d["backends_skipped"].items()] + [""]
    rows = []
    for r in d.get("cases", []):
        errs = r.get("max_err") or {}
        rows.append(
            [
                r.get("shape"),
                r.get("B"),
                r.get("heads"),
                r.get("N"),
                r.get("dtype"),
                r.get("mode"),
                r.get("backend"),
                r.get("status"),
                r.get("ms"),
                r.get("speedup_vs_sdpa"),
                errs.get("out"),
                max((v for k, v in errs.items() if k != "out"), default=None),
                r.get("rel_err"),
                r.get("error") or r.get("reason"),
            ]
        )
    lines += _table(
        [
            "shape",
            "B",
            "heads",
            "N",
            "dtype",
            "mode",
            "backend",
            "status",
            "ms",
            "× sdpa",
            "max err out",
            "max err grads",
            "rel err",
            "note",
        ],
        rows,
    )
    return lines + [
        "",
        "Errors: largest |Δ| from the float32 reference on the same inputs; rel err over the "
        "reference's largest magnitude.",
        "",
    ]


def _md_step(d: dict) -> list[str]:
    s = d.get("settings") or {}
    lines = [
        f"{s.get('model')}, {s.get('frames')}×{s.get('img_size')}², B={s.get('batch_size')}, ratio "
        f"{s.get('ratio')}, {s.get('dtype')}, {s.get('steps')} timed steps after {s.get('warmup')}; decoder "
        f"masking available: {_fmt(d.get('decoder_keep_available'))}",
        "",
    ]
    rows = [
        [
            r.get("impl"),
            r.get("decoder_keep"),
            r.get("status"),
            r.get("s_per_step"),
            r.get("clips_per_s"),
            r.get("tflops"),
            r.get("speedup_vs_hf"),
            r.get("peak_mem_mb"),
            r.get("loss"),
            r.get("error") or r.get("reason"),
        ]
        for r in d.get("cases", [])
    ]
    return (
        lines
        + _table(
            ["impl", "decoder keep", "status", "s/step", "clips/s", "TFLOP/s", "× HF", "peak MiB", "loss", "note"], rows
        )
        + [""]
    )


def _md_dali(d: dict) -> list[str]:
    s = d.get("settings") or {}
    lines = [
        f"{s.get('videos')} videos of {s.get('video_frames')} frames at {s.get('size')}², {s.get('items')} "
        f"items, batches of {s.get('batch_size')} × {s.get('num_frames')} frames (stride {s.get('stride')}), "
        f"on {s.get('device')}",
        "",
    ]
    rows = [
        [
            codec,
            v.get("status"),
            v.get("dali_clip_device"),
            v.get("same_order"),
            v.get("same_frames"),
            v.get("same_region_maps"),
            v.get("mean_abs_luma_diff"),
            v.get("mean_abs_pixel_diff"),
            v.get("max_abs_pixel_diff"),
            v.get("dali_first_epoch_s"),
            v.get("dali_epoch_s"),
            v.get("torch_epoch_s"),
            v.get("dali_speedup"),
            v.get("error") or v.get("reason"),
        ]
        for codec, v in (d.get("variants") or {}).items()
    ]
    return (
        lines
        + _table(
            [
                "codec",
                "status",
                "DALI output on",
                "same order",
                "same frames",
                "same maps",
                "mean |Δ| luma",
                "mean |Δ| RGB",
                "max |Δ| RGB",
                "DALI 1st epoch s",
                "DALI epoch s",
                "torch epoch s",
                "DALI × torch",
                "note",
            ],
            rows,
        )
        + [
            "",
            "Pixel differences in 0–255 units between DALI's and PyAV's decoding of the same files; the luma is "
            f"checked (≤ {DALI_LUMA_TOLERANCE}), the colour only reported.",
            "",
        ]
    )


_MD_DETAILS: dict[str, Callable[[dict], list[str]]] = {
    "tests": _md_tests,
    "attention": _md_attention,
    "step": _md_step,
    "dali": _md_dali,
}


def format_markdown(report: dict) -> str:
    """The Markdown summary of a report: the machine, one line per check, then each check's numbers."""
    env = report.get("environment") or {}
    results = report.get("checks") or []
    counts = report.get("summary") or summarize(results)
    pk = env.get("packages") or {}
    gpu = env.get("gpu") or "no GPU"
    lines = [
        f"# FMAE GPU check: {gpu}, {report.get('started', '')}",
        "",
        f"{counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped in "
        f"{_fmt(report.get('wall_s'))} s (budget {_fmt(report.get('budget_s'))} s). Command: "
        f"`{report.get('command', '')}`",
        "",
    ]
    lines += _table(
        ["", ""],
        [
            [
                "GPU",
                f"{gpu} ({env.get('gpu_capability', '?')}, {env.get('gpu_memory_gib', '?')} GiB, "
                f"{env.get('gpu_count', '?')} device(s)), driver {env.get('driver') or '?'}",
            ],
            ["torch", f"{env.get('torch')} (CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')})"],
            ["Triton", env.get("triton")],
            [
                "fmae",
                f"{env.get('fmae')}; CUDA extension built: {_fmt(env.get('cuda_extension_built'))}, C++ extension "
                f"built: {_fmt(env.get('cpp_extension_built'))}",
            ],
            ["packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v) or "—"],
            ["machine", f"Python {env.get('python')}, {env.get('cpu_count')} CPUs, {env.get('platform')}"],
        ],
    )
    lines += ["", "## Checks", ""]
    lines += _table(
        ["check", "status", "seconds", "limit s", "summary"],
        [
            [
                f"{r.get('name')}: {r.get('title')}",
                f"**{r.get('status')}**",
                r.get("seconds"),
                r.get("limit_s"),
                summary_line(r),
            ]
            for r in results
        ],
    )
    for r in results:
        lines += ["", f"## {r.get('name')}: {r.get('title')} — {r.get('status')}", ""]
        if r.get("reason"):
            lines += [f"Reason: {r['reason']}", ""]
        if r.get("error"):
            lines += [f"Error: `{_fmt(r['error'])}`", ""]
        lines += [f"- note: {n}" for n in r.get("notes") or []]
        lines += [f"- problem: {f}" for f in (r.get("failures") or [])[:30]]
        if r.get("notes") or r.get("failures"):
            lines.append("")
        details = r.get("details") or {}
        if details:
            try:
                lines += _MD_DETAILS[r["name"]](details) if r.get("name") in _MD_DETAILS else []
            except Exception as err:  # noqa: BLE001 - odd details are shown raw, never lost
                lines += [
                    f"(details could not be laid out: {err!r})",
                    "",
                    "```json",
                    json.dumps(_jsonable(details), indent=1)[:6000],
                    "```",
                    "",
                ]
        for key, title in (("traceback", "traceback"), ("output_tail", "end of the check's output")):
            if r.get(key) and r.get("status") == "failed" and r.get("name") != "tests":
                lines += [
                    f"<details><summary>{title}</summary>",
                    "",
                    "```",
                    r[key][-3000:],
                    "```",
                    "",
                    "</details>",
                    "",
                ]
    return "\n".join(lines).rstrip() + "\n"


def summary_text(report: dict) -> str:
    """The terminal's closing table: one line per check."""
    results = report.get("checks") or []
    width = max([len(r.get("name", "")) for r in results] + [5])
    lines = [f"GPU check on {report.get('environment', {}).get('gpu')}, {report.get('wall_s')} s:"]
    lines += [
        f"  {r.get('name', ''):<{width}}  {r.get('status', ''):<7}  {r.get('seconds', 0):>6.0f} s  {summary_line(r)}"
        for r in results
    ]
    c = report.get("summary") or summarize(results)
    lines.append(f"{c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('skipped', 0)} skipped")
    return "\n".join(lines)
