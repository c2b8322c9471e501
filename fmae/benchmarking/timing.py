"""The one way FMAE's benchmarks time a call: ``bench step``, ``bench gpu`` and the pytest
benchmarks (``benchmarks/conftest.py``) all count seconds through here.

- :func:`synchronize`: wait for ``device``'s queued work (CUDA), else nothing;
- :func:`timed_call`: one call's wall time, synchronised before and after;
- :func:`timed_calls`: ``n`` back-to-back calls, each timed: on CUDA with events recorded
  between them (no host synchronisation is added to the calls), elsewhere with the wall clock;
- :func:`abba`: the order of alternating calls (ABBA), so that a change of the machine's load
  hits each alike;
- :func:`time_calls`: warm-up, then :func:`timed_calls`; the median and the fastest in ms;
- :func:`matmul_peak`: the machine's square-matmul FLOP/s, the yardstick of every
  ``fraction_of_peak``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from fmae.runtime.device import cpu_has_fast_bf16

PEAK_SIZE, PEAK_ROUNDS = 1024, 10
"""The square product of :func:`matmul_peak`: ``PEAK_SIZE²`` (512² for bf16 on a CPU
without bf16 hardware, whose fallback is two orders of magnitude slower), fastest of
``PEAK_ROUNDS`` after a warm-up."""


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (CUDA); elsewhere calls run synchronously."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (wall clock, ``device`` synchronised before and after) and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def timed_calls(
    fn: Callable[[], Any], n: int, device: torch.device | str, on_each: Callable[[], Any] | None = None
) -> tuple[list[float], Any]:
    """Seconds of each of ``n`` back-to-back calls of ``fn``, and the last call's result.

    On CUDA, events are recorded between the calls (no host synchronisation between them);
    elsewhere the wall clock. ``on_each`` is called after each call (a progress bar's update).
    """
    on_each = on_each or (lambda: None)
    last = None
    if torch.device(device).type != "cuda":
        times = []
        for _ in range(n):
            start = time.perf_counter()
            last = fn()
            times.append(time.perf_counter() - start)
            on_each()
        return times, last
    events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
    events[0].record()
    for i in range(n):
        last = fn()
        events[i + 1].record()
        on_each()
    synchronize(device)
    return [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])], last


def abba(names: Sequence[str], n: int) -> Iterator[str]:
    """``n`` rounds of ``names``, every other round reversed (A B, B A, A B, ...)."""
    for i in range(n):
        yield from names if i % 2 == 0 else reversed(names)


def time_calls(
    fn: Callable[[], Any], device: Any, warmup: int = 3, iters: int = 20, target_s: float | None = 0.5
) -> dict[str, Any]:
    """Per-call time of ``fn`` after ``warmup`` untimed calls: the median and the fastest.

    Timed by :func:`timed_calls`. ``target_s``: fewer timed calls (at least 3) when ``iters``
    of them would take longer. Returns ``ms``, ``ms_min``, ``calls`` and ``last``, the last
    call's result.
    """
    last = None
    for _ in range(warmup):
        last = fn()
    synchronize(device)
    if target_s is not None:
        one, last = timed_call(fn, device)
        iters = max(3, min(iters, int(target_s / max(one, 1e-6))))
    seconds, last = timed_calls(fn, iters, device)
    times = [1e3 * s for s in seconds]
    return {"ms": statistics.median(times), "ms_min": min(times), "calls": iters, "last": last}


def peak_size(dtype: torch.dtype, device: torch.device | str) -> int:
    """:data:`PEAK_SIZE`, or 512 for bf16 on a CPU without bf16 hardware (AMX/AVX512-BF16),
    whose fallback kernel is two orders of magnitude slower than fp32."""
    slow = torch.device(device).type == "cpu" and dtype == torch.bfloat16 and not cpu_has_fast_bf16()
    return 512 if slow else PEAK_SIZE


def matmul_peak(
    dtype: torch.dtype, device: torch.device | str, size: int | None = None, rounds: int = PEAK_ROUNDS
) -> float:
    """The machine's matrix-product FLOP/s in ``dtype`` now: the fastest of ``rounds``
    square ``size × size`` products after one warm-up (``size`` default :func:`peak_size`).
    Well under a second."""
    device = torch.device(device)
    size = size or peak_size(dtype, device)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
    timed_call(lambda: a @ b, device)  # the warm-up
    best = min(timed_call(lambda: a @ b, device)[0] for _ in range(rounds))
    return 2 * size**3 / best
