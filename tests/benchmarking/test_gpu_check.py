"""``python -m fmae.bench gpu``: what can be checked without a GPU — the dry run, the budget,
a failing or crashing check, the report writers, the pytest runner, and each check's
measuring code on the CPU at toy sizes (so that its first run on a GPU is not its first run)."""

import json
import math
import sys
import textwrap
import time

import pytest
import torch

from fmae.bench import main
from fmae.benchmarking import gpu_check
from fmae.benchmarking.gpu_check import CHECKS, Check, Context, GpuCheckConfig, Skip
from fmae.data import dali_available

CLOCK = {"now": 0.0}


def fake_clock() -> float:
    return CLOCK["now"]


def _config(tmp_path, **kw) -> GpuCheckConfig:
    return GpuCheckConfig(out=str(tmp_path / "out"), **kw)


def _ctx(tmp_path, limit=600.0) -> Context:
    return Context(_config(tmp_path), time.monotonic() + limit, tmp_path / "scratch")


# Fake checks, found by the runner as "test_gpu_check:<name>"; they move the fake clock.
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


# ---------------------------------------------------------------- the command


def test_dry_run_lists_every_check_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["gpu", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    head = "No CUDA here:" if not torch.cuda.is_available() else "Dry run: nothing was run."
    assert text.startswith(head)
    assert f"python -m fmae.bench gpu --out {out}" in text and "480 s budget" in text
    for name in ("1. tests", "2. attention", "3. step", "4. dali"):
        assert name in text
    assert "python -m pytest -q" in text and "tests/ops" in text and "tests/masking/test_strategies.py" in text
    assert "reference, sdpa, triton, xformers" in text and "decoder [8,6,1568,64]" in text
    assert "encoder r0.9 [2,12,157,64]" in text and "bf16 and fp16" in text
    assert "VideoMAEForPreTraining" in text and "fmae_random_mae keep 0.5" in text
    assert "make_loader(backend='dali', device='cuda')" in text
    assert "gpu_check.json" in text and "gpu_check.md" in text
    assert not out.exists()


def test_dry_run_follows_the_settings(tmp_path, capsys):
    assert (
        main(
            [
                "gpu",
                "--out",
                str(tmp_path),
                "--dry-run",
                "--checks",
                "step,attention",
                "--budget",
                "300",
                "--attention-batch-sizes",
                "4",
                "--step-batch-size",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "1. attention" in text and "2. step" in text and "tests/ops" not in text and "dali" not in text
    assert "300 s budget" in text and "--budget 300.0" in text and "[4,12,157,64]" in text and "B=2," in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_says_so_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_checks", lambda *a, **k: pytest.fail("nothing may run without CUDA"))
    assert main(["gpu", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("No CUDA here: torch ") and "4. dali" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--checks", "tests,nope"], "checks must be"),
        (["--checks", ","], "checks must be"),
        (["--budget", "0"], "budget must be"),
        (["--attention-batch-sizes", "2,x"], "attention_batch_sizes"),
        (["--step-ratio", "1"], "step_ratio"),
    ],
)
def test_bad_settings_are_clear_errors(capsys, flags, message):
    assert main(["gpu", "--dry-run", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gpu", "--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


# ---------------------------------------------------------------- budget and errors


def test_allot():
    a, b = _fake("a", 10, 50, takes_30), _fake("b", 30, 100, takes_30)
    assert gpu_check.allot(100, a, [b]) == 50  # its own limit
    assert gpu_check.allot(60, a, [b]) == 30  # leaves b its estimate
    assert gpu_check.allot(35, a, [b]) == 10  # never under its own estimate
    assert gpu_check.allot(9, a, [b]) is None  # does not fit at all
    assert gpu_check.allot(30, b) == 30


def test_budget_skips_the_checks_that_do_not_fit(tmp_path):
    CLOCK["now"] = 0.0
    checks = [_fake("a", 10, 50, takes_40), _fake("b", 30, 100, takes_30), _fake("c", 40, 100, takes_30)]
    lines = []
    results = gpu_check.run_checks(
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
    results = gpu_check.run_checks(
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

    monkeypatch.setattr(gpu_check, "check_attention", broken)
    (result,) = gpu_check.run_checks(
        [CHECKS["attention"]], _config(tmp_path), 480, tmp_path, isolate=False, log=lambda line: None
    )
    assert result["status"] == "failed" and result["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert result["details"]["cases"][0]["backend"] == "triton"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["attention", "step", "dali"])
def test_real_checks_skip_without_cuda(tmp_path, name):
    result = gpu_check.run_inline(CHECKS[name], _config(tmp_path), 60, tmp_path)
    assert result["status"] == "skipped" and result["reason"].startswith("no CUDA: torch")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the real checks on the GPU")
def test_the_whole_command_with_its_processes(tmp_path, capsys, monkeypatch):
    """The command as on a GPU machine (CUDA faked in this process only): each check runs in
    its own process, where the real check finds no CUDA and says so; the report is written."""
    monkeypatch.setattr(gpu_check, "cuda_status", lambda: (True, "faked"))
    out = tmp_path / "out"
    assert main(["gpu", "--out", str(out), "--checks", "attention,step,dali", "--budget", "200"]) == 0
    captured = capsys.readouterr()
    assert "[1/3] attention" in captured.err and f"wrote {out / 'gpu_check.json'}" in captured.out
    report = json.loads((out / "gpu_check.json").read_text())
    assert [c["name"] for c in report["checks"]] == ["attention", "step", "dali"]
    for c in report["checks"]:
        assert c["status"] == "skipped" and c["reason"].startswith("no CUDA: torch"), c
    assert report["summary"] == {"ok": 0, "failed": 0, "skipped": 3} and report["wall_s"] > 0
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["gpu"] is None and env["cpp_extension_built"] in (True, False)
    assert report["command"] == f"python -m fmae.bench gpu --out {out} --budget 200.0 --checks attention,step,dali"
    md = (out / "gpu_check.md").read_text()
    assert "0 ok, 0 failed, 3 skipped" in md and "no CUDA: torch" in md
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]


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
    monkeypatch.setattr(gpu_check, "GRACE_S", 1.0)
    checks = [Check(n, n, 0, limit, f"child_checks:{n}") for n, limit in (("fine", 30), ("dies", 30), ("hangs", 2))]
    started = time.monotonic()
    fine, dies, hangs = gpu_check.run_checks(
        checks, _config(tmp_path), 100, tmp_path / "scratch", log=lambda line: None
    )
    assert time.monotonic() - started < 60
    assert fine["status"] == "ok" and fine["details"] == {"n": 3} and fine["seconds"] > 0
    assert dies["status"] == "failed" and "status 3" in dies["error"] and dies["details"] == {"saved": 1}
    assert hangs["status"] == "failed" and hangs["error"].startswith("killed after") and hangs["details"]["before"]


# ---------------------------------------------------------------- the report


def _fake_report():
    env = {
        "gpu": "NVIDIA H200",
        "gpu_capability": "sm_90",
        "gpu_memory_gib": 139.8,
        "gpu_count": 1,
        "driver": "580.159.03",
        "torch": "2.14.1+cu130",
        "cuda": "13.0",
        "cudnn": 91400,
        "triton": "3.8.0",
        "fmae": "0.1.0",
        "cuda_extension_built": True,
        "cpp_extension_built": True,
        "python": "3.12.3",
        "cpu_count": 16,
        "platform": "Linux",
        "packages": {"transformers": "5.17.0", "xformers": None},
    }
    tests = {
        "name": "tests",
        "title": "the GPU tests, with pytest",
        "status": "ok",
        "seconds": 101.2,
        "limit_s": 240,
        "reason": None,
        "error": None,
        "failures": [],
        "notes": [],
        "details": {
            "command": "python -m pytest -q tests/ops",
            "returncode": 0,
            "timed_out": False,
            "seconds": 100.0,
            "counts": {"passed": 340, "skipped": 5},
            "problems": [],
            "output_tail": "340 passed, 5 skipped in 100.0s",
        },
    }
    attention = {
        "name": "attention",
        "title": "attention",
        "status": "failed",
        "seconds": 50,
        "limit_s": 150,
        "reason": "1 problem(s): triton fwd",
        "error": None,
        "failures": ["triton fwd decoder: too far"],
        "notes": [],
        "traceback": None,
        "details": {
            "backends_skipped": {"xformers": "xformers is not installed"},
            "cases": [
                {
                    "shape": "decoder",
                    "B": 2,
                    "heads": 6,
                    "N": 1568,
                    "head_dim": 64,
                    "dtype": "bfloat16",
                    "backend": "sdpa",
                    "mode": "fwd",
                    "status": "ok",
                    "ms": 0.21,
                    "speedup_vs_sdpa": 1.0,
                    "max_err": {"out": 0.0039},
                    "rel_err": 0.001,
                },
                {
                    "shape": "decoder",
                    "B": 2,
                    "heads": 6,
                    "N": 1568,
                    "head_dim": 64,
                    "dtype": "bfloat16",
                    "backend": "triton",
                    "mode": "fwd+bwd",
                    "status": "failed",
                    "ms": 0.5,
                    "speedup_vs_sdpa": 0.7,
                    "max_err": {"out": float("nan"), "dq": 0.5},
                    "rel_err": float("inf"),
                    "error": "too far",
                },
            ],
        },
    }
    step = {
        "name": "step",
        "title": "step",
        "status": "ok",
        "seconds": 80,
        "limit_s": 150,
        "reason": None,
        "error": None,
        "failures": [],
        "notes": [],
        "details": {
            "decoder_keep_available": False,
            "settings": {"model": "fmae_vit_base", "batch_size": 8},
            "cases": [
                {"impl": "hf_videomae", "decoder_keep": 1.0, "status": "ok", "s_per_step": 0.1},
                {
                    "impl": "fmae_random_mae",
                    "decoder_keep": 1.0,
                    "status": "ok",
                    "s_per_step": 0.08,
                    "speedup_vs_hf": 1.25,
                },
                {
                    "impl": "fmae_random_mae",
                    "decoder_keep": 0.5,
                    "status": "skipped",
                    "reason": "decoder_keep not available",
                },
            ],
        },
    }
    dali = {
        "name": "dali",
        "title": "dali",
        "status": "skipped",
        "seconds": 0.0,
        "limit_s": 0.0,
        "reason": "NVIDIA DALI is not installed",
        "error": None,
        "failures": [],
        "notes": [],
        "details": {"variants": "not a mapping"},
    }  # odd details: shown raw, never lost
    crashed = {
        "name": "other",
        "status": "failed",
        "error": "its process ended (signal SIGSEGV) before reporting",
        "output_tail": "Segmentation fault",
    }
    return {
        "fmae_gpu_check": 1,
        "started": "2026-12-01T10:00:00+00:00",
        "command": "python -m fmae.bench gpu",
        "budget_s": 480.0,
        "wall_s": 231.4,
        "environment": env,
        "checks": [tests, attention, step, dali, crashed],
    }


def test_report_writers(tmp_path):
    report = _fake_report()
    json_path, md_path = gpu_check.write_report(tmp_path / "o", report)
    assert json_path.name == "gpu_check.json" and md_path.name == "gpu_check.md"
    data = json.loads(json_path.read_text())  # strict JSON: NaN and inf written as strings
    assert data["environment"]["gpu"] == "NVIDIA H200" and data["checks"][0]["details"]["counts"]["passed"] == 340
    case = data["checks"][1]["details"]["cases"][1]
    assert case["max_err"]["out"] == "nan" and case["rel_err"] == "inf"
    md = md_path.read_text()
    assert md.startswith("# FMAE GPU check: NVIDIA H200, 2026-12-01")
    assert "2 ok, 2 failed, 1 skipped in 231 s (budget 480 s)" in md
    for text in (
        "sm_90",
        "driver 580.159.03",
        "2.14.1+cu130 (CUDA 13.0",
        "| Triton | 3.8.0 |",
        "CUDA extension built: yes",
        "transformers 5.17.0",
        "| tests: the GPU tests, with pytest | **ok** |",
        "340 passed, 5 skipped",
        "xformers skipped: xformers is not installed",
        "| decoder | 2 | 6 | 1568 |",
        "problem: triton fwd decoder: too far",
        "decoder_keep not available",
        "fmae_random_mae keep 1: 1.25x HF",
        "Reason: NVIDIA DALI is not installed",
        "not a mapping",
        "signal SIGSEGV",
        "Segmentation fault",
    ):
        assert text in md, text
    assert all(len(line) < 2000 for line in md.splitlines())
    text = gpu_check.summary_text({**report, "summary": gpu_check.summarize(report["checks"])})
    assert "tests" in text and "2 ok, 2 failed, 1 skipped" in text


def test_report_of_no_checks_yet(tmp_path):
    _, md_path = gpu_check.write_report(tmp_path, {"environment": {}, "checks": []})
    assert "0 ok, 0 failed, 0 skipped" in md_path.read_text()


# ---------------------------------------------------------------- the tests check


def test_parse_pytest_counts():
    text = "...\nFAILED tests/ops/x.py::t - boom\n3 failed, 120 passed, 2 skipped, 1 error, 4 warnings in 9.12s\n"
    assert gpu_check.parse_pytest_counts(text) == {"failed": 3, "passed": 120, "skipped": 2, "errors": 1, "warnings": 4}
    assert gpu_check.parse_pytest_counts("==== 7 passed in 0.50s (0:00:00) ====") == {"passed": 7}
    assert gpu_check.parse_pytest_counts("no summary at all: 3 passed cars") == {}


def test_pytest_targets_are_tests_ops_and_the_cuda_gated_files():
    root = gpu_check.source_root()
    targets = gpu_check.pytest_targets(root)
    assert (
        targets[0] == "tests/ops"
        and "tests/masking/test_strategies.py" in targets
        and "tests/runtime/test_device.py" in targets
    )
    assert not any(t.endswith(("conftest.py", "test_gpu_check.py")) for t in targets)
    cmd = gpu_check.pytest_command(root)
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and "tests/ops" in cmd


def test_run_pytest_counts_and_stops_at_its_limit(tmp_path):
    (tmp_path / "test_toy.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2\n")
    (tmp_path / "slow" / "test_slow.py").parent.mkdir()
    (tmp_path / "slow" / "test_slow.py").write_text("import time\n\ndef test_sleeps():\n    time.sleep(60)\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf"]
    got = gpu_check.run_pytest([*cmd, "test_toy.py"], tmp_path, 60, tmp_path / "log" / "toy.log")
    assert got["returncode"] == 1 and not got["timed_out"] and got["counts"] == {"passed": 1, "failed": 1}
    assert got["problems"] and got["problems"][0].startswith("FAILED test_toy.py::test_b")
    assert (tmp_path / "log" / "toy.log").read_text().endswith(got["output_tail"])
    started = time.monotonic()
    got = gpu_check.run_pytest([*cmd, "slow"], tmp_path, 3, tmp_path / "slow.log")
    assert got["timed_out"] and got["returncode"] is None and time.monotonic() - started < 30
    assert got["counts"] == {} and got["counts_so_far"] == {}


def test_parse_pytest_progress():
    text = "..F.s                [ 40%]\ntests/ops/test_a.py ..E.x\n...       [100%]\nnot .. this\nF.. and more"
    assert gpu_check.parse_pytest_progress(text) == {"passed": 9, "failed": 1, "skipped": 1, "errors": 1, "xfailed": 1}


# ---------------------------------------------------------------- the checks' measuring code, on the CPU


def test_attention_measurement_on_cpu(tmp_path):
    ctx = _ctx(tmp_path)
    shapes = [("toy", 1, 2, 19, 16)]
    gpu_check.measure_attention(
        ctx, "cpu", shapes, (torch.bfloat16,), backends=("reference", "sdpa", "xformers"), warmup=1, iters=3
    )
    cases = ctx.details["cases"]
    assert ctx.failures == [] and "xformers" in ctx.details["backends_skipped"]
    assert {(c["backend"], c["mode"]) for c in cases} == {
        (b, m) for b in ("reference", "sdpa") for m in ("fwd", "fwd+bwd")
    }
    for c in cases:
        assert c["status"] == "ok" and c["ms"] > 0 and c["calls"] >= 3 and c["rel_err"] < 0.03
        assert set(c["max_err"]) == ({"out"} if c["mode"] == "fwd" else {"out", "dq", "dk", "dv"})
        assert c["speedup_vs_sdpa"] > 0 and (c["backend"] != "sdpa" or c["speedup_vs_sdpa"] == 1.0)


def test_attention_errors_over_the_tolerance_fail(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    monkeypatch.setitem(gpu_check.ATTENTION_TOLERANCE, "bfloat16", 0.0)
    gpu_check.measure_attention(
        ctx, "cpu", [("toy", 1, 1, 8, 8)], (torch.bfloat16,), backends=("sdpa",), modes=("fwd",), warmup=0, iters=3
    )
    (case,) = ctx.details["cases"]
    assert case["status"] == "failed" and "over the tolerance 0" in case["error"] and ctx.failures


def test_attention_shapes_are_vit_b():
    shapes = gpu_check.attention_shapes([2, 8])
    assert ("encoder r0.9", 2, 12, 157, 64) in shapes and ("encoder r0.5", 8, 12, 784, 64) in shapes
    assert ("decoder", 8, 6, 1568, 64) in shapes and len(shapes) == 6


def test_step_cases_without_and_with_decoder_keep():
    without = gpu_check.step_cases(False)
    assert without[0]["impl"] == "hf_videomae"
    assert [c.get("skip") for c in without if c["decoder_keep"] == 0.5] == ["decoder_keep not available"] * 2
    assert not any("skip" in c for c in gpu_check.step_cases(True))
    assert isinstance(gpu_check.has_decoder_keep(), bool)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # benchmarks' "full" mark, loaded outside them
def test_step_measurement_on_cpu(tmp_path, monkeypatch):
    """The HF baseline from the benchmarks and FMAE's bench_step, at toy size; without
    decoder masking the keep 0.5 cases are skipped with the reason."""
    pytest.importorskip("transformers")
    monkeypatch.setattr(gpu_check, "has_decoder_keep", lambda: False)
    ctx = _ctx(tmp_path)
    gpu_check.measure_steps(
        ctx, "cpu", "tiny", img_size=32, frames=4, batch_size=2, ratio=0.5, steps=1, warmup=1, dtype="fp32"
    )
    by = {(c["impl"], c["decoder_keep"]): c for c in ctx.details["cases"]}
    assert ctx.failures == [] and len(by) == 5
    hf = by["hf_videomae", 1.0]
    assert hf["status"] == "ok" and hf["s_per_step"] > 0 and math.isfinite(hf["loss"]) and hf["batch_size"] == 2
    for impl in ("fmae_random_mae", "fmae_facial_adv"):
        assert by[impl, 1.0]["status"] == "ok" and by[impl, 1.0]["speedup_vs_hf"] > 0
        assert by[impl, 0.5] == {
            "impl": impl,
            "strategy": by[impl, 1.0]["strategy"],
            "adv_weight": by[impl, 1.0]["adv_weight"],
            "decoder_keep": 0.5,
            "status": "skipped",
            "reason": "decoder_keep not available",
        }


@pytest.mark.slow
@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_dali_comparison_on_cpu(tmp_path):
    """DALI's CPU pipeline against the PyTorch loader: the same items, frames and maps. On the
    CPU, DALI cannot decode H.264: that variant fails, as a note, not a failure."""
    pytest.importorskip("av")
    ctx = _ctx(tmp_path)
    gpu_check.measure_dali(
        ctx, "cpu", size=32, clips=2, video_frames=12, repeats=2, batch_size=2, num_frames=4, stride=2
    )
    mjpeg, h264 = ctx.details["variants"]["mjpeg"], ctx.details["variants"]["h264"]
    assert mjpeg["status"] == "ok", mjpeg
    assert mjpeg["same_order"] and mjpeg["same_frames"] and mjpeg["same_region_maps"]
    assert (
        mjpeg["mean_abs_luma_diff"] < 2
        and mjpeg["mean_abs_pixel_diff"] > 0
        and mjpeg["clip_shape"] == [4, 3, 4, 32, 32]
    )
    assert mjpeg["dali_epoch_s"] > 0 and mjpeg["torch_epoch_s"] > 0 and mjpeg["dali_clip_device"] == "cpu"
    assert ctx.details["settings"]["videos"] == 2 and ctx.details["settings"]["items"] == 4
    assert h264["status"] == "failed" and ctx.failures == [] and ctx.notes[0].startswith("h264: RuntimeError: DALI")
    assert "Failed to create video decoder" in h264["error"]  # the end of DALI's message says why


def test_h264_writer_round_trips(tmp_path):
    import numpy as np

    from fmae.data.clips import count_frames, read_frames

    frames = np.random.default_rng(0).integers(0, 255, (10, 32, 48, 3), dtype=np.uint8)
    frames[:] = frames[:, :1, :1]  # flat frames: lossless enough to compare
    gpu_check.write_h264(tmp_path / "x.mp4", frames)
    assert count_frames(tmp_path / "x.mp4") == 10
    back = read_frames(tmp_path / "x.mp4", np.arange(10)).astype(float)
    assert back.shape == frames.shape and np.abs(back - frames).mean() < 4
