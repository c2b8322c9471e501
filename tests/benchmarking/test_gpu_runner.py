"""``python -m fmae.bench gpu``'s runner (:mod:`fmae.benchmarking.gpu.runner`): the budget, a
failing, crashing or hanging check, each recorded while the next still runs."""

import sys
import textwrap
import time

import pytest
import torch

from fmae.benchmarking.gpu import CHECKS, Check, GpuCheckConfig, Skip, attention, runner

CLOCK = {"now": 0.0}


def fake_clock() -> float:
    return CLOCK["now"]


def _config(tmp_path, **kw) -> GpuCheckConfig:
    return GpuCheckConfig(out=str(tmp_path / "out"), **kw)


# Fake checks, found by the runner as "test_gpu_runner:<name>"; they move the fake clock.
def takes_40(ctx):
    CLOCK["now"] += 40
    ctx.details["limit_seen"] = round(ctx.left())


def takes_30(ctx):
    CLOCK["now"] += 30


def boom(ctx):
    ctx.details["before"] = 1
    raise RuntimeError("boom")


def finds_problems(ctx):
    ctx.details["cases"] = [{"status": "failed"}]
    ctx.failures.append("triton fwd decoder: relative error 0.5 over the tolerance 0.03")


def skips(ctx):
    raise Skip("xformers does not import")


def calls_pytest_skip(ctx):
    pytest.skip("a BaseException, not an Exception")


def _fake(name, estimate, limit, fn) -> Check:
    return Check(name, f"fake {name}", estimate, limit, f"{__name__}:{fn.__name__}")


# ---------------------------------------------------------------- budget and errors


def test_allot():
    a, b = _fake("a", 10, 50, takes_30), _fake("b", 30, 100, takes_30)
    assert runner.allot(100, a, [b]) == 50  # its own limit
    assert runner.allot(60, a, [b]) == 30  # leaves b its estimate
    assert runner.allot(35, a, [b]) == 10  # never under its own estimate
    assert runner.allot(9, a, [b]) is None  # does not fit at all
    assert runner.allot(30, b) == 30


def test_budget_skips_the_checks_that_do_not_fit(tmp_path):
    CLOCK["now"] = 0.0
    checks = [_fake("a", 10, 50, takes_40), _fake("b", 30, 100, takes_30), _fake("c", 40, 100, takes_30)]
    lines = []
    results = runner.run_checks(
        checks, _config(tmp_path), 100, tmp_path, isolate=False, clock=fake_clock, log=lines.append
    )
    a, b, c = results
    # a: 100 s left, b and c need 70 → at most 30 s (its own limit would be 50).
    assert a["status"] == "ok" and a["limit_s"] == 30 and a["details"] == {"limit_seen": 30 - 40}
    assert b["status"] == "ok" and b["limit_s"] == 30 and b["seconds"] == 30
    assert c["status"] == "skipped" and c["reason"].startswith("out of budget") and "30 s of the 100 s" in c["reason"]
    assert any("a: ok" in line for line in lines) and any("c: skipped" in line for line in lines)


def test_a_failing_check_is_recorded_and_the_next_runs(tmp_path):
    checks = [
        _fake("boom", 0, 10, boom),
        _fake("problems", 0, 10, finds_problems),
        _fake("skips", 0, 10, skips),
        _fake("pytest_skip", 0, 10, calls_pytest_skip),
        _fake("after", 0, 10, takes_30),
    ]
    seen = []
    results = runner.run_checks(
        checks,
        _config(tmp_path),
        100,
        tmp_path,
        isolate=False,
        on_result=lambda rs: seen.append(len(rs)),
        log=lambda line: None,
    )
    by = {r["name"]: r for r in results}
    assert by["boom"]["status"] == "failed" and by["boom"]["error"] == "RuntimeError: boom"
    assert "raise RuntimeError" in by["boom"]["traceback"] and by["boom"]["details"] == {"before": 1}
    assert by["problems"]["status"] == "failed" and "relative error 0.5" in by["problems"]["reason"]
    assert by["skips"]["status"] == "skipped" and by["skips"]["reason"] == "xformers does not import"
    assert by["pytest_skip"]["status"] == "failed" and "a BaseException" in by["pytest_skip"]["error"]
    assert by["after"]["status"] == "ok"
    assert seen == [1, 2, 3, 4, 5]  # the report is rewritten after each check


def test_a_real_check_that_raises_is_captured(tmp_path, monkeypatch):
    def broken(ctx):
        ctx.details["cases"] = [{"backend": "triton", "status": "ok"}]
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(attention, "check", broken)
    (result,) = runner.run_checks(
        [CHECKS["attention"]], _config(tmp_path), 480, tmp_path, isolate=False, log=lambda line: None
    )
    assert result["status"] == "failed" and result["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert result["details"]["cases"][0]["backend"] == "triton"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["attention", "step", "dali", "memory"])
def test_real_checks_skip_without_cuda(tmp_path, name):
    result = runner.run_inline(CHECKS[name], _config(tmp_path), 60, tmp_path)
    assert result["status"] == "skipped" and result["reason"].startswith("no CUDA: torch")


CHILD_CHECKS = """
import os, time

def fine(ctx):
    ctx.details["n"] = 3

def dies(ctx):
    ctx.details["saved"] = 1
    ctx.save()
    os._exit(3)

def hangs(ctx):
    ctx.details["before"] = True
    ctx.save()
    time.sleep(120)
"""


def test_a_check_process_that_dies_or_hangs_is_recorded(tmp_path, monkeypatch):
    (tmp_path / "child_checks.py").write_text(textwrap.dedent(CHILD_CHECKS))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    monkeypatch.setattr(runner, "GRACE_S", 1.0)
    # The hang's limit covers the child's start (a torch import: seconds on a loaded 2-core box) before it saves.
    checks = [Check(n, n, 0, limit, f"child_checks:{n}") for n, limit in (("fine", 30), ("dies", 30), ("hangs", 10))]
    started = time.monotonic()
    fine, dies, hangs = runner.run_checks(checks, _config(tmp_path), 100, tmp_path / "scratch", log=lambda line: None)
    assert time.monotonic() - started < 60
    assert fine["status"] == "ok" and fine["details"] == {"n": 3} and fine["seconds"] > 0
    assert dies["status"] == "failed" and "status 3" in dies["error"] and dies["details"] == {"saved": 1}
    assert hangs["status"] == "failed" and hangs["error"].startswith("killed after") and hangs["details"]["before"]
