"""Shared benchmark plumbing: every group has one baseline, measured in the same run,
and each other member is reported as a speed-up over it (ratio of the fastest rounds:
background load only ever adds time, so the minimum is the steadiest estimate; in the
terminal and in the JSON).

Two modes: by default the benchmarks marked ``full`` (ViT-B steps and the like, hours
on a 2-core CPU) are skipped, so ``pytest benchmarks --benchmark-only`` takes minutes;
``--full`` runs everything. ``--rounds N`` times every benchmark N rounds.

Achieved FLOP/s: a benchmark that stores its ``flops`` in ``extra_info`` and samples
the ``matmul_peak`` fixture gets ``fraction_of_peak`` in the JSON — its FLOP/s (from
its fastest round) over the best square-matmul FLOP/s sampled in the whole run
(``machine_info["matmul_peak_flops_per_s"]``, beside the run's conditions: torch,
threads, load average at the start and the end).
"""

from __future__ import annotations

import os

import pytest
import torch

from fmae.benchmarking import timing
from fmae.runtime.machine import describe, load_averages

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="also run the benchmarks marked 'full' (the ViT-B steps: hours on 2 CPU cores)",
    )
    parser.addoption(
        "--rounds",
        type=int,
        default=None,
        help="timed rounds of every benchmark, instead of each one's own number (more rounds steady "
        "the fastest round on a busy machine)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "full: a heavy benchmark, run only with --full")
    config._fmae_matmul_peak = {}
    config._fmae_load_at_start = load_averages()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="heavy benchmark: run with --full")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


def _speedups(benchmarks) -> list[tuple[str, str, float]]:
    by_group: dict[str, list] = {}
    for bench in benchmarks:
        if bench.stats and bench.stats.min:
            by_group.setdefault(bench.group or "", []).append(bench)
    rows = []
    for group, members in by_group.items():
        base = [b for b in members if b.extra_info.get("baseline")]
        if len(base) != 1:
            continue
        for bench in members:
            speedup = base[0].stats.min / bench.stats.min
            bench.extra_info["speedup_vs_baseline"] = round(speedup, 3)
            rows.append((group, bench.extra_info.get("impl", bench.name), speedup))
    return rows


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    rows = _speedups(session.benchmarks) if session is not None else []
    if rows:
        terminalreporter.section("speed-up over each group's baseline (same run)")
        for group, impl, speedup in rows:
            terminalreporter.write_line(f"{group:<56} {impl:<22} {speedup:8.2f}x")


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the timings depend on besides the CPU: torch, its threads, the OpenMP wait
    policy, the device, and the machine's load (1/5/15-minute averages) at the start and
    the end of the run — other processes' load only ever adds time."""
    machine = describe(torch.device("cuda") if torch.cuda.is_available() else None)
    machine_info["fmae"] = {
        "torch": machine["torch"],
        "device": machine["gpu"] or "cpu",
        "cpu_count": machine["cpu_count"],
        "torch_threads": machine["cpu_threads"],
        "OMP_WAIT_POLICY": machine["omp_wait_policy"],
        "full": config.getoption("--full"),
        "rounds": config.getoption("--rounds"),
        "load_average_start": _rounded(config._fmae_load_at_start),
        "load_average_end": _rounded(load_averages()),
    }


def _rounded(averages: tuple[float, ...] | None) -> list[float] | None:
    return None if averages is None else [round(x, 2) for x in averages]


def _fractions_of_peak(config, benchmarks) -> None:
    best = config._fmae_matmul_peak
    for bench in benchmarks:
        info = bench.extra_info
        key = info.get("matmul_peak")
        if key in best and info.get("flops") and bench.stats and bench.stats.min:
            info["matmul_peak_flops_per_s"] = round(best[key])
            info["fraction_of_peak"] = round(info["flops"] / bench.stats.min / best[key], 4)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    _speedups(benchmarks)
    _fractions_of_peak(config, benchmarks)
    for entry, bench in zip(output_json["benchmarks"], benchmarks):
        entry["extra_info"] = bench.extra_info
    peaks = getattr(config, "_fmae_matmul_peak", {})
    if peaks:
        output_json["machine_info"]["matmul_peak_flops_per_s"] = {key: round(v) for key, v in peaks.items()}


@pytest.fixture
def measure(benchmark, request):
    """``measure(fn, impl=..., baseline=..., rounds=...)``: time ``fn`` and label it in its group
    (``--rounds`` overrides ``rounds``)."""
    forced = request.config.getoption("--rounds")

    def run(fn, impl: str, baseline: bool = False, rounds: int = 10):
        rounds = forced or rounds
        benchmark.extra_info.update(impl=impl, baseline=baseline)
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=min(2, rounds))

    return run


class MatmulPeak:
    """The machine's matmul FLOP/s, the yardstick of achieved-FLOP/s fractions.

    ``peak.sample(dtype, device)`` times a square product ``n × n @ n × n`` now
    (:func:`fmae.benchmarking.timing.matmul_peak`: ``n =`` :func:`~fmae.benchmarking.timing.peak_size`,
    the fastest of 5 after a warm-up, well under a second)
    and keeps the best FLOP/s of the run for that device and dtype; it returns their key
    (``"cpu float32"``) for the benchmark's ``extra_info["matmul_peak"]``, or ``None``
    under ``--benchmark-disable``. Sampling beside each benchmark and keeping the best
    makes the peak a busy machine's quietest moment, not whatever the load was when
    the first benchmark ran.
    """

    def __init__(self, best: dict[str, float], disabled: bool) -> None:
        self.best, self.disabled = best, disabled

    def sample(self, dtype: torch.dtype, device: torch.device | str) -> str | None:
        if self.disabled:
            return None
        device = torch.device(device)
        key = f"{device.type} {str(dtype).removeprefix('torch.')}"
        self.best[key] = max(self.best.get(key, 0.0), timing.matmul_peak(dtype, device, rounds=5))
        return key


@pytest.fixture(scope="session")
def matmul_peak(request) -> MatmulPeak:
    """:class:`MatmulPeak` of this run."""
    return MatmulPeak(request.config._fmae_matmul_peak, request.config.getoption("benchmark_disable", False))
