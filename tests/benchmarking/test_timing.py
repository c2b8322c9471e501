"""The one step timer (:mod:`fmae.benchmarking.timing`) and the one attention shape table
(:mod:`fmae.benchmarking.shapes`) that ``bench step``, ``bench gpu`` and the benchmarks share."""

import time

import torch

from fmae.benchmarking import shapes, timing


def test_abba_alternates_the_order():
    assert list(timing.abba(["a", "b"], 3)) == ["a", "b", "b", "a", "a", "b"]
    assert list(timing.abba(["a"], 2)) == ["a", "a"]


def test_timed_call_and_timed_calls_on_the_cpu():
    seconds, got = timing.timed_call(lambda: time.sleep(0.01) or 7, "cpu")
    assert got == 7 and 0.005 < seconds < 1.0
    ticks = []
    times, last = timing.timed_calls(lambda: len(ticks), 4, torch.device("cpu"), lambda: ticks.append(1))
    assert len(times) == 4 and all(t >= 0 for t in times) and last == 3 and len(ticks) == 4


def test_time_calls_reports_ms_and_caps_the_calls():
    calls = []
    got = timing.time_calls(lambda: calls.append(time.sleep(0.02)), "cpu", warmup=1, iters=50, target_s=0.05)
    assert 3 <= got["calls"] < 50 and got["ms"] >= got["ms_min"] > 10 and len(calls) == 1 + 1 + got["calls"]
    assert timing.time_calls(lambda: 1, "cpu", warmup=0, iters=5, target_s=None)["calls"] == 5


def test_matmul_peak_size():
    assert timing.peak_size(torch.float32, "cpu") == timing.PEAK_SIZE
    # FLOP/s, not GFLOP/s nor seconds; a 64² product timed twice on a loaded machine has read 6.5e7.
    assert 1e5 < timing.matmul_peak(torch.float32, "cpu", size=64, rounds=2) < 1e15


def test_one_attention_table_for_the_gpu_check_and_the_benchmarks():
    slugs = [s.slug for s in shapes.ATTENTION_SHAPES]
    assert slugs == ["encoder-base-r0.9", "encoder-base-r0.5", "decoder-base", "decoder-tiny"]
    assert [(s.name, s.heads, s.tokens, s.head_dim) for s in shapes.VIT_B_ATTENTION] == [
        ("encoder r0.9", 12, 157, 64),
        ("encoder r0.5", 12, 784, 64),
        ("decoder", 6, 1568, 64),
    ]
