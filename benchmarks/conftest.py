"""Shared benchmark plumbing: every group has one baseline, measured in the same run,
and each other member is reported as a speed-up over it (ratio of the fastest rounds:
background load only ever adds time, so the minimum is the steadiest estimate; in the
terminal and in the JSON)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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


def pytest_benchmark_update_json(config, benchmarks, output_json):
    _speedups(benchmarks)
    for entry, bench in zip(output_json["benchmarks"], benchmarks):
        entry["extra_info"] = bench.extra_info


@pytest.fixture
def measure(benchmark):
    """``measure(fn, impl=..., baseline=..., rounds=...)``: time ``fn`` and label it in its group."""

    def run(fn, impl: str, baseline: bool = False, rounds: int = 10):
        benchmark.extra_info.update(impl=impl, baseline=baseline)
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=min(2, rounds))

    return run
