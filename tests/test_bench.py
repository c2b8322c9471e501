"""``python -m fmae.bench step``: its JSON, the step it times, its errors."""

import json
import math

import pytest
import torch

from fmae import throughput
from fmae.bench import main
from fmae.flops import step_flops
from fmae.model import FMAE, get_config

MODEL = get_config("fmae_vit_tiny", img_size=32, num_frames=4)
# Tiny model on 4 frames of 32 x 32 (2 x 2 x 2 tokens), a few steps.
FAST = ["step", "--model", "tiny", "--img-size", "32", "--frames", "4", "--batch-size", "2", "--ratio", "0.5",
        "--steps", "2", "--warmup", "1", "--device", "cpu", "--no-progress"]
KEYS = {"s_per_step", "clips_per_s", "tflops", "peak_mem_mb", "peak_mem_kind", "dtype", "torch", "cpu", "gpu",
        "flops_per_step", "first_step_s", "compile_s", "loss"}


def _run_json(capsys, *extra):
    assert main([*FAST, "--json", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_bf16_asked_is_bf16(capsys):
    r = _run_json(capsys, "--dtype", "bf16", "--steps", "1", "--warmup", "0")
    assert r["dtype"] == "bf16" and math.isfinite(r["loss"])


def test_table_without_json(capsys):
    assert main([*FAST, "--dtype", "fp32", "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "clips/s" in out and "TFLOP/s" in out and "fp32 (fp32 asked), eager, cpu" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("adv_weight", [0.0, 0.1])
def test_json_of_the_real_step_with_and_without_discriminator(capsys, monkeypatch, adv_weight):
    """The JSON has the keys with sane values, and the step timed is Pretrainer.step: the
    model learns, and with λ > 0 the discriminator is updated too."""
    built = []

    def spy(*args, **kwargs):
        step = real(*args, **kwargs)
        disc = step.run.discriminator
        built.append((step, _snapshot(step.run.model), None if disc is None else _snapshot(disc)))
        return step

    real = throughput.make_pretrain_step
    monkeypatch.setattr(throughput, "make_pretrain_step", spy)
    r = _run_json(capsys, "--dtype", "fp32", "--adv-weight", str(adv_weight))
    (step, model_before, disc_before), = built
    assert step.run.step_count == 3  # 1 warm-up + 2 timed
    assert any(not torch.equal(a, b) for a, b in zip(model_before, step.run.model.parameters()))
    if adv_weight == 0:
        assert step.run.discriminator is None and disc_before is None
    else:
        changed = [not torch.equal(a, b) for a, b in zip(disc_before, step.run.discriminator.parameters())]
        assert all(changed)
    assert KEYS <= set(r)
    assert r["dtype"] == "fp32" and r["dtype_requested"] == "fp32" and r["device"] == "cpu"
    assert r["model"] == "fmae_vit_tiny" and r["steps"] == 2 and r["compile"] is False and r["compile_s"] is None
    assert 0 < r["s_per_step_min"] <= r["s_per_step"] and r["s_per_step_mean"] >= r["s_per_step_min"]
    assert math.isclose(r["clips_per_s"], 2 / r["s_per_step"], rel_tol=1e-9)
    flops = step_flops(MODEL, 2, 0.5, "facial", adv_weight).total
    assert r["flops_per_step"] == flops
    assert r["tflops"] > 0 and math.isclose(r["tflops"], flops / r["s_per_step"] / 1e12, rel_tol=1e-9)
    # The gradients and Adam's two moments of 2.7M float32 weights (32 MB) are made in the warm-up step.
    assert r["peak_mem_kind"] == "cpu_peak_rss_growth"
    # The timed steps may reuse pages the process already holds (after other tests, say): growth can be 0.
    assert 0 <= r["peak_mem_mb"] <= r["process_peak_mem_mb"] and r["process_peak_mem_mb"] > 0
    assert math.isfinite(r["loss"]) and r["gpu"] is None and r["torch"] == torch.__version__


def test_compile_compiles_the_model_and_reports_its_time(capsys, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    r = _run_json(capsys, "--dtype", "fp32", "--compile", "--steps", "1")
    assert len(compiled) == 1 and isinstance(compiled[0], FMAE)
    assert r["compile"] is True and r["compile_s"] >= 0 and r["first_step_s"] > 0
    # The last switch wins; with compile on, warmup 0 is refused before anything is built.
    assert main([*FAST, "--compile", "--no-compile", "--warmup", "0", "--ratio", "0.01"]) == 2
    assert "masks no token" in capsys.readouterr().err
    assert main([*FAST, "--no-compile", "--compile", "--warmup", "0"]) == 2
    assert "compile needs warmup" in capsys.readouterr().err


def test_random_batch_shapes_and_regions():
    clip, maps = throughput.random_batch(MODEL, 3, torch.Generator().manual_seed(0))
    assert clip.shape == (3, 3, 4, 32, 32) and clip.dtype == torch.float32
    assert maps.shape == (3, 4, 32, 32) and maps.dtype == torch.uint8
    assert int(maps.max()) < 7 and len(maps.unique()) > 1
    # Constant over each 8 x 8 block.
    blocks = maps.view(3, 4, 4, 8, 4, 8)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))


@pytest.mark.parametrize("flags,message", [
    (["--ratio", "1.5"], "ratio must be in"),
    (["--img-size", "40"], "tubelet"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--warmup", "-1"], "warmup"),
    (["--adv-weight", "-1"], "adv_weight"),
    (["--compile", "--warmup", "0"], "compile needs warmup"),
    (["--ratio", "0.01"], "masks no token"),
])
def test_bad_settings_are_clear_errors(capsys, flags, message):
    assert main([*FAST, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    assert main([*FAST, "--device", "cuda"]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["step", "--model", "huge"], ["step", "--dtype", "fp16"], ["nothing"], []])
def test_bad_flags_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["step", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--adv-weight" in out and "--no-compile" in out and "python -m fmae.bench step --model base" in out
