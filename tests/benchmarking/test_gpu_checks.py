"""``python -m fmae.bench gpu``'s checks, one module each (:mod:`fmae.benchmarking.gpu.tests`,
``.attention``, ``.step``, ``.dali``): the pytest runner and, on the CPU at toy sizes, each
check's measuring code (so that its first run on a GPU is not its first run)."""

import math
import sys
import time

import pytest
import torch

from fmae.benchmarking.gpu import Context, GpuCheckConfig, attention, dali, runner, step
from fmae.benchmarking.gpu import tests as tests_check
from fmae.data import dali_available


def _config(tmp_path, **kw) -> GpuCheckConfig:
    return GpuCheckConfig(out=str(tmp_path / "out"), **kw)


def _ctx(tmp_path, limit=600.0) -> Context:
    return Context(_config(tmp_path), time.monotonic() + limit, tmp_path / "scratch")


# ---------------------------------------------------------------- the tests check


def test_parse_pytest_counts():
    text = "...\nFAILED tests/ops/x.py::t - boom\n3 failed, 120 passed, 2 skipped, 1 error, 4 warnings in 9.12s\n"
    assert tests_check.parse_pytest_counts(text) == {
        "failed": 3,
        "passed": 120,
        "skipped": 2,
        "errors": 1,
        "warnings": 4,
    }
    assert tests_check.parse_pytest_counts("==== 7 passed in 0.50s (0:00:00) ====") == {"passed": 7}
    assert tests_check.parse_pytest_counts("no summary at all: 3 passed cars") == {}


def test_pytest_targets_are_tests_ops_and_the_cuda_gated_files():
    root = runner.source_root()
    targets = tests_check.pytest_targets(root)
    assert (
        targets[0] == "tests/ops"
        and "tests/masking/test_strategies.py" in targets
        and "tests/runtime/test_device.py" in targets
    )
    assert not any(t.endswith("conftest.py") or t.rpartition("/")[2].startswith(tests_check.OWN_TESTS) for t in targets)
    assert not any(t.endswith(("test_gpu_runner.py", "test_gpu_checks.py", "test_gpu_command.py")) for t in targets)
    cmd = tests_check.pytest_command(root)
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and "tests/ops" in cmd


def test_run_pytest_counts_and_stops_at_its_limit(tmp_path):
    (tmp_path / "test_toy.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2\n")
    (tmp_path / "slow" / "test_slow.py").parent.mkdir()
    (tmp_path / "slow" / "test_slow.py").write_text("import time\n\ndef test_sleeps():\n    time.sleep(60)\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf"]
    got = tests_check.run_pytest([*cmd, "test_toy.py"], tmp_path, 60, tmp_path / "log" / "toy.log")
    assert got["returncode"] == 1 and not got["timed_out"] and got["counts"] == {"passed": 1, "failed": 1}
    assert got["problems"] and got["problems"][0].startswith("FAILED test_toy.py::test_b")
    assert (tmp_path / "log" / "toy.log").read_text().endswith(got["output_tail"])
    started = time.monotonic()
    got = tests_check.run_pytest([*cmd, "slow"], tmp_path, 3, tmp_path / "slow.log")
    assert got["timed_out"] and got["returncode"] is None and time.monotonic() - started < 30
    assert got["counts"] == {} and got["counts_so_far"] == {}


def test_parse_pytest_progress():
    text = "..F.s                [ 40%]\ntests/ops/test_a.py ..E.x\n...       [100%]\nnot .. this\nF.. and more"
    assert tests_check.parse_pytest_progress(text) == {
        "passed": 9,
        "failed": 1,
        "skipped": 1,
        "errors": 1,
        "xfailed": 1,
    }


# ---------------------------------------------------------------- the checks' measuring code, on the CPU


def test_attention_measurement_on_cpu(tmp_path):
    ctx = _ctx(tmp_path)
    shapes = [("toy", 1, 2, 19, 16)]
    attention.measure_attention(
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
    monkeypatch.setitem(attention.ATTENTION_TOLERANCE, "bfloat16", 0.0)
    attention.measure_attention(
        ctx, "cpu", [("toy", 1, 1, 8, 8)], (torch.bfloat16,), backends=("sdpa",), modes=("fwd",), warmup=0, iters=3
    )
    (case,) = ctx.details["cases"]
    assert case["status"] == "failed" and "over the tolerance 0" in case["error"] and ctx.failures


def test_attention_shapes_are_vit_b():
    shapes = attention.attention_shapes([2, 8])
    assert ("encoder r0.9", 2, 12, 157, 64) in shapes and ("encoder r0.5", 8, 12, 784, 64) in shapes
    assert ("decoder", 8, 6, 1568, 64) in shapes and len(shapes) == 6


def test_step_cases_without_and_with_decoder_keep():
    without = step.step_cases(False)
    assert without[0]["impl"] == "hf_videomae"
    assert [c.get("skip") for c in without if c["decoder_keep"] == 0.5] == ["decoder_keep not available"] * 2
    assert not any("skip" in c for c in step.step_cases(True))
    assert isinstance(step.has_decoder_keep(), bool)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # benchmarks' "full" mark, loaded outside them
def test_step_measurement_on_cpu(tmp_path, monkeypatch):
    """The HF baseline from the benchmarks and FMAE's bench_step, at toy size; without
    decoder masking the keep 0.5 cases are skipped with the reason."""
    pytest.importorskip("transformers")
    monkeypatch.setattr(step, "has_decoder_keep", lambda: False)
    ctx = _ctx(tmp_path)
    step.measure_steps(
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
    dali.measure_dali(ctx, "cpu", size=32, clips=2, video_frames=12, repeats=2, batch_size=2, num_frames=4, stride=2)
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
    dali.write_h264(tmp_path / "x.mp4", frames)
    assert count_frames(tmp_path / "x.mp4") == 10
    back = read_frames(tmp_path / "x.mp4", np.arange(10)).astype(float)
    assert back.shape == frames.shape and np.abs(back - frames).mean() < 4
