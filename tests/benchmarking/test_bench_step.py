"""``python -m fmae.bench step``: its JSON, the step it times, its errors."""

import json
import math

import pytest
import torch

from fmae.bench import main
from fmae.benchmarking import step as throughput
from fmae.model import FMAE, get_config
from fmae.model.flops import step_flops

MODEL = get_config("fmae_vit_tiny", img_size=32, num_frames=4)
# Tiny model on 4 frames of 32 x 32 (2 x 2 x 2 tokens), a few steps.
FAST = [
    "step",
    "--model",
    "tiny",
    "--img-size",
    "32",
    "--frames",
    "4",
    "--batch-size",
    "2",
    "--ratio",
    "0.5",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--device",
    "cpu",
    "--no-progress",
]
KEYS = {
    "s_per_step",
    "clips_per_s",
    "tflops",
    "peak_mem_mb",
    "peak_mem_kind",
    "dtype",
    "torch",
    "cpu",
    "gpu",
    "flops_per_step",
    "first_step_s",
    "compile_s",
    "loss",
}


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
    ((step, model_before, disc_before),) = built
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


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--ratio", "1.5"], "ratio must be in"),
        (["--img-size", "40"], "tubelet"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--warmup", "-1"], "warmup"),
        (["--adv-weight", "-1"], "adv_weight"),
        (["--compile", "--warmup", "0"], "compile needs warmup"),
        (["--ratio", "0.01"], "masks no token"),
    ],
)
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


def test_decoder_keep_and_peak_fraction_in_the_json(capsys, monkeypatch):
    built = []
    real = throughput.make_pretrain_step
    monkeypatch.setattr(throughput, "make_pretrain_step", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    r = _run_json(
        capsys,
        "--dtype",
        "fp32",
        "--ratio",
        "0.75",
        "--decoder-keep",
        "0.5",
        "--decoder-strategy",
        "random",
        "--adv-weight",
        "0.1",
    )
    (step,) = built
    assert step.run.config.decoder_keep == 0.5 and step.run.config.decoder_strategy == "random"
    assert (r["decoder_keep"], r["decoder_strategy"], r["num_masked"], r["decoder_targets"]) == (0.5, "random", 6, 3)
    assert r["flops_per_step"] == step_flops(MODEL, 2, 0.75, "facial", 0.1, decoder_keep=0.5).total
    assert r["flops_per_step"] < step_flops(MODEL, 2, 0.75, "facial", 0.1).total
    # The TFLOP/s against the square-matmul peak in the dtype the step ran in, measured in the process.
    assert r["matmul_peak_tflops"] > 0 and r["compare"] == "none" and "speedup_vs_hf" not in r
    assert math.isclose(r["fraction_of_peak"], r["tflops"] / r["matmul_peak_tflops"], rel_tol=1e-9)
    assert main([*FAST, "--decoder-keep", "0"]) == 2
    assert "decoder_keep must be in" in capsys.readouterr().err


def test_table_names_the_decoder_and_the_peak(capsys):
    assert main([*FAST, "--dtype", "fp32", "--steps", "1", "--warmup", "0", "--decoder-keep", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "keep 0.5: 2 of 4 masked tokens (running_cell)" in out and "% of the fp32 matmul peak" in out


def test_matmul_peak_is_a_rate():
    assert 1e8 < throughput.matmul_peak(torch.float32, "cpu", size=128, rounds=2) < 1e15


def test_hf_step_trains():
    pytest.importorskip("transformers")
    step = throughput.hf_videomae_step(MODEL, 0.5, 2, torch.float32)
    assert step.pixels.shape == (2, 4, 3, 32, 32) and step.mask.shape == (2, 8) and step.mask.sum(1).tolist() == [4, 4]
    before = [p.detach().clone() for p in step.model.parameters()]
    assert torch.isfinite(step()) and torch.isfinite(step())
    assert any(not torch.equal(a, b) for a, b in zip(before, step.model.parameters()))
    assert step.optimizer.defaults["fused"] is True


def test_compare_hf_in_the_same_run(capsys):
    pytest.importorskip("transformers")
    r = _run_json(
        capsys,
        "--dtype",
        "fp32",
        "--compare",
        "hf",
        "--decoder-keep",
        "0.5",
        "--adv-weight",
        "0",
        "--strategy",
        "random",
    )
    assert r["compare"] == "hf" and r["hf_s_per_step"] > 0 and math.isfinite(r["hf_loss"])
    assert math.isclose(r["speedup_vs_hf"], r["hf_s_per_step"] / r["s_per_step"], rel_tol=1e-9)
    assert math.isclose(r["speedup_vs_hf_min"], r["hf_s_per_step_min"] / r["s_per_step_min"], rel_tol=1e-9)
    assert r["hf_flops_per_step"] == step_flops(MODEL, 2, 0.5, "random", 0.0).total > r["flops_per_step"]
    assert math.isclose(r["hf_clips_per_s"], 2 / r["hf_s_per_step"], rel_tol=1e-9)
    assert 0 < r["hf_fraction_of_peak"] and r["hf_peak_mem_mb"] >= 0 and r["hf_first_step_s"] > 0
    assert main([*FAST, "--dtype", "fp32", "--compare", "hf", "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "HF step" in out and "FMAE / HF" in out and "x (HF s/step over FMAE's" in out


def test_compare_hf_without_transformers_is_a_clear_error(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    assert main([*FAST, "--compare", "hf"]) == 2
    assert "pip install transformers" in capsys.readouterr().err


def _attention_starts(hf_step) -> list[str]:
    """Records each start of the first encoder and decoder layer's attention of HF's model
    (HF checkpoints a layer's ``forward``, inside its hooks, so the recomputation shows below it)."""
    calls: list[str] = []
    hf_step.model.videomae.encoder.layer[0].attention.register_forward_pre_hook(lambda *_: calls.append("encoder"))
    hf_step.model.decoder.decoder_layers[0].attention.register_forward_pre_hook(lambda *_: calls.append("decoder"))
    return calls


def test_accumulation_and_checkpointing_reach_both_steps(capsys, monkeypatch):
    pytest.importorskip("transformers")
    built = {}
    real_fmae, real_hf = throughput.make_pretrain_step, throughput.hf_videomae_step
    monkeypatch.setattr(throughput, "make_pretrain_step", lambda *a, **k: built.setdefault("fmae", real_fmae(*a, **k)))
    monkeypatch.setattr(throughput, "hf_videomae_step", lambda *a, **k: built.setdefault("hf", real_hf(*a, **k)))
    flags = ("--dtype", "fp32", "--batch-size", "4", "--accum-steps", "2", "--grad-checkpointing", "--compare", "hf")
    r = _run_json(capsys, *flags, "--steps", "1")
    assert built["fmae"].run.config.accum_steps == 2 and built["fmae"].run.model.grad_checkpointing
    assert built["hf"].accum_steps == 2
    # One more HF step: two micro-batches, each layer recomputed in its backward pass.
    calls = _attention_starts(built["hf"])
    built["hf"]()
    assert calls == ["encoder", "decoder", "decoder", "encoder"] * 2
    assert (r["accum_steps"], r["grad_checkpointing"], r["batch_size"]) == (2, True, 4)
    assert r["peak_mem_mb"] >= 0 and r["hf_peak_mem_mb"] >= 0 and r["peak_mem_kind"] == "cpu_step_rss_growth"
    assert main([*FAST, *flags, "--steps", "1", "--warmup", "0"]) == 0
    assert "fp32 (fp32 asked), eager, 2 micro-batches, blocks checkpointed, cpu" in capsys.readouterr().out
    assert main([*FAST, "--accum-steps", "3"]) == 2
    assert "batch_size 2 must split into accum_steps 3 micro-batches" in capsys.readouterr().err


def test_hf_step_accumulates_to_the_whole_batchs_gradients():
    pytest.importorskip("transformers")
    whole, split = (throughput.hf_videomae_step(MODEL, 0.5, 4, torch.float32, accum_steps=k) for k in (1, 2))
    calls = _attention_starts(split)
    assert float(split()) == pytest.approx(float(whole()), rel=1e-6) and calls == ["encoder", "decoder"] * 2
    grads = [torch.cat([p.grad.flatten() for p in s.model.parameters() if p.grad is not None]) for s in (whole, split)]
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) <= 1e-5
