"""``bench gpu``'s memory check (:mod:`fmae.benchmarking.gpu.memory`): the search for the
largest batch that fits, against fake "fits" functions, and its measuring code on the CPU
at toy size (where nothing runs out of memory)."""

import time

import pytest

from fmae.benchmarking.gpu import Context, GpuCheckConfig, memory
from fmae.benchmarking.gpu.report import format_markdown, summary_line


def _below(limit: int, calls: list[int] | None = None):
    """A fake ``fits``: batches up to ``limit`` fit; ``calls`` collects the batches asked."""

    def fits(batch: int) -> bool:
        if calls is not None:
            calls.append(batch)
        return batch <= limit

    return fits


@pytest.mark.parametrize("limit", [1, 7, 8, 9, 100, 383, 384, 1000, 4095])
def test_exact_search_finds_the_limit(limit):
    found = memory.largest_batch(_below(limit), start=8, cap=4096, resolution=0)
    assert found.complete and found.largest == limit and found.smallest_failing == limit + 1
    assert all(ok == (b <= limit) for b, ok in found.tried)
    # Doubling then bisection: about two logarithms of trials, not one trial per batch.
    assert len(found.tried) <= 2 * (limit.bit_length() + 4)


def test_doubling_then_bisection_in_order():
    found = memory.largest_batch(_below(100), start=8, cap=4096, resolution=0)
    assert [b for b, _ in found.tried] == [8, 16, 32, 64, 128, 96, 112, 104, 100, 102, 101]


@pytest.mark.parametrize("limit", [40, 300, 2000])
def test_resolution_closes_the_bracket_early(limit):
    found = memory.largest_batch(_below(limit), resolution=1 / 16)
    assert found.complete and found.largest <= limit < found.smallest_failing
    assert found.smallest_failing - found.largest <= max(1, found.largest // 16)
    assert len(found.tried) < len(memory.largest_batch(_below(limit), resolution=0).tried)


def test_a_start_that_does_not_fit_halves_down():
    found = memory.largest_batch(_below(3), start=8, resolution=0)
    assert [b for b, _ in found.tried] == [8, 4, 2, 3] and (found.largest, found.smallest_failing) == (3, 4)
    nothing = memory.largest_batch(_below(0), start=8)
    assert nothing.complete and (nothing.largest, nothing.smallest_failing) == (0, 1)


def test_the_cap_ends_a_search_where_everything_fits():
    calls: list[int] = []
    found = memory.largest_batch(_below(10**6, calls), start=8, cap=100)
    assert calls == [8, 16, 32, 64, 100] and found.complete
    assert (found.largest, found.smallest_failing) == (100, None)


def test_stopping_early_keeps_the_bracket_so_far():
    calls: list[int] = []
    found = memory.largest_batch(_below(100, calls), start=8, should_stop=lambda: len(calls) == 5)
    assert not found.complete and calls == [8, 16, 32, 64, 128]
    assert (found.largest, found.smallest_failing) == (64, 128)


def test_bad_search_settings():
    for kw in ({"start": 0}, {"start": 9, "cap": 8}, {"resolution": -1}):
        with pytest.raises(ValueError, match="start <= cap"):
            memory.largest_batch(_below(5), **kw)


@pytest.mark.slow
def test_memory_measurement_on_cpu(tmp_path):
    """The real step at toy size; on the CPU every batch up to the cap fits, with and without
    checkpointing, and the report lays the cases out."""
    config = GpuCheckConfig(out=str(tmp_path / "out"))
    ctx = Context(config, time.monotonic() + 600.0, tmp_path / "scratch")
    cases = (("tiny", False), ("tiny", True))
    memory.measure_memory(ctx, "cpu", 0.5, cases, cap=4, dtype="fp32", img_size=32, frames=4)
    rows = ctx.details["cases"]
    assert ctx.failures == [] and [r["grad_checkpointing"] for r in rows] == [False, True]
    for r in rows:
        assert r["status"] == "ok" and r["largest_batch"] == 4 and r["smallest_failing"] is None
        assert r["tried"] == [(4, True)] and r["s_per_step"] > 0 and r["peak_gib"] is None
    assert rows[1]["batch_gain"] == 1.0
    assert ctx.details["settings"] == {
        "img_size": 32,
        "frames": 4,
        "ratio": 0.5,
        "dtype": "fp32",
        "cap": 4,
        "device": "cpu",
    }
    result = {"name": "memory", "title": "t", "status": "ok", "details": ctx.details}
    assert summary_line(result) == "tiny B<=4; tiny ckpt B<=4"
    text = format_markdown({"checks": [result]})
    assert "| fmae_vit_tiny | yes | ok | 4 | — | 1 |" in text


def test_out_of_time_cases_are_skipped_with_what_they_found(tmp_path, monkeypatch):
    config = GpuCheckConfig(out=str(tmp_path / "out"))
    ctx = Context(config, time.monotonic() - 1.0, tmp_path / "scratch")  # already past its deadline

    class Fits:
        def __init__(self, *args):
            self.peak_gib, self.seconds = {}, {}

        def __call__(self, batch):
            return True

    monkeypatch.setattr(memory, "StepFits", Fits)
    memory.measure_memory(ctx, "cpu", 0.9, (("base", False),))
    (row,) = ctx.details["cases"]
    assert row["status"] == "skipped" and row["reason"].startswith("out of time") and row["tried"] == []
    assert row["largest_batch"] == 0 and ctx.failures == []
