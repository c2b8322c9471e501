"""``python -m fmae.bench gpu``'s report (:mod:`fmae.benchmarking.gpu.report`): the JSON and
Markdown writers and the terminal's summary."""

import json

from fmae.benchmarking.gpu import report as gpu_report

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
    json_path, md_path = gpu_report.write_report(tmp_path / "o", report)
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
    text = gpu_report.summary_text({**report, "summary": gpu_report.summarize(report["checks"])})
    assert "tests" in text and "2 ok, 2 failed, 1 skipped" in text


def test_report_of_no_checks_yet(tmp_path):
    _, md_path = gpu_report.write_report(tmp_path, {"environment": {}, "checks": []})
    assert "0 ok, 0 failed, 0 skipped" in md_path.read_text()
