"""Gradient accumulation (``accum_steps``) and gradient checkpointing in the pre-training step
and the run: the same update as the whole batch, on one process and under torchrun."""

import copy
import json

import pytest
import torch
from torchrun_helpers import torchrun
from train_helpers import train_args

from fmae.benchmarking.step import random_batch
from fmae.model import get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer
from fmae.train import main as train_main
from fmae.weights.checkpoint import load_checkpoint

# Tiny model on 4 frames of 32 x 32: 8 tokens, 4 of them masked at ratio 0.5.
MODEL = get_config("fmae_vit_tiny", img_size=32, num_frames=4)
B = 8
STATS = ("loss", "rec_loss", "adv_loss", "grad_norm", "disc_grad_norm")


def _trainer(**overrides):
    torch.manual_seed(0)
    settings = dict(strategy="facial", mask_ratio=0.5, adv_weight=0.1, batch_size=B, base_lr=0.05, clip_grad=None)
    return Pretrainer(MODEL, PretrainConfig(**{**settings, **overrides}))


def _relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """‖a − b‖ / ‖b‖ over all the tensors of a network at once."""
    a, b = torch.cat([t.detach().flatten() for t in a]), torch.cat([t.detach().flatten() for t in b])
    return float((a - b).norm() / b.norm())


def _two_steps(run: Pretrainer, seen: list[int] | None = None) -> tuple[list[dict], dict[str, list[torch.Tensor]]]:
    """Two steps on the same fixed batch (masks seeded per step): their stats, and each
    network's gradients of the first step. ``seen`` collects the batch size of every model forward."""
    if seen is not None:
        run.model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    clip, maps = random_batch(MODEL, B, torch.Generator().manual_seed(1))
    stats = [run.step(clip, maps, torch.Generator().manual_seed(0))]
    nets = {"model": run.model, "discriminator": run.discriminator}
    grads = {name: [p.grad.clone() for p in net.parameters()] for name, net in nets.items() if net is not None}
    stats.append(run.step(clip, maps, torch.Generator().manual_seed(1)))
    return stats, grads


@pytest.mark.parametrize(
    "k,settings",
    [
        (2, {}),  # the default facial mask, the paper's BCE discriminator
        (4, {"clip_grad": 0.05}),  # clipping (active: the norms are ~1) applies to the summed gradients
        (8, {"decoder_keep": 0.5, "adv_loss": "wgan", "grad_checkpointing": True}),
    ],
)
def test_accumulated_update_is_the_whole_batchs(k, settings):
    whole, split = _trainer(**settings), _trainer(accum_steps=k, **settings)
    seen: list[int] = []
    (want, want_grads), (got, got_grads) = _two_steps(whole), _two_steps(split, seen)
    # Each step: k micro-batches without gradients for the discriminator, then k with them.
    assert seen == [B // k] * (4 * k)
    for a, b in zip(want, got):
        for key in (*STATS, "disc_loss" if "disc_loss" in a else "critic_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-5), key
    if "clip_grad" in settings:
        assert float(want[0]["grad_norm"]) > settings["clip_grad"]
    # The first step's gradients and the weights after both updates: within 1e-5 of the whole
    # batch's, relative, over each network. The second step's gradients start afresh (a sum
    # with the first's would be off by their size), from weights that differ by rounding.
    for net in ("model", "discriminator"):
        a, b = list(getattr(whole, net).parameters()), list(getattr(split, net).parameters())
        assert _relative(got_grads[net], want_grads[net]) <= 1e-5, net
        assert _relative(b, a) <= 1e-5, net
        assert _relative([p.grad for p in b], [p.grad for p in a]) <= 1e-4, net


def test_without_discriminator_each_micro_batch_runs_once():
    seen: list[int] = []
    whole, split = _trainer(adv_weight=0.0), _trainer(adv_weight=0.0, accum_steps=4)
    (want, _), (got, _) = _two_steps(whole), _two_steps(split, seen)
    assert seen == [B // 4] * 8 and "adv_loss" not in got[1]
    assert float(got[1]["loss"]) == pytest.approx(float(want[1]["loss"]), rel=1e-5)
    assert _relative(list(split.model.parameters()), list(whole.model.parameters())) <= 1e-5


def test_a_non_finite_micro_batch_skips_the_whole_update():
    run = _trainer(accum_steps=2)
    clip, maps = random_batch(MODEL, B, torch.Generator().manual_seed(1))
    run.step(clip, maps, torch.Generator().manual_seed(0))
    before = copy.deepcopy(run.state_dict())
    bad = clip.clone()
    bad[-1, 0, 0, 0, 0] = float("nan")  # in the last micro-batch only
    stats = run.step(bad, maps, torch.Generator().manual_seed(1))
    assert stats["skipped"].item() == 1.0 and stats["disc_skipped"].item() == 1.0
    after = run.state_dict()
    for net in ("model", "discriminator"):
        assert all(torch.equal(after[net][k], v) for k, v in before[net].items()), net


def test_micro_batches_must_split_the_batch():
    with pytest.raises(ValueError, match="accum_steps must be a positive divisor"):
        PretrainConfig(batch_size=6, accum_steps=4)
    with pytest.raises(ValueError, match="accum_steps"):
        PretrainConfig(accum_steps=0)
    clip, maps = random_batch(MODEL, 3, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="does not split into 2 micro-batches"):
        _trainer(accum_steps=2).step(clip, maps)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out, step):
    return load_checkpoint(out / "checkpoints" / f"ckpt-{step:08d}.safetensors")["trainer"]["model"]


def _assert_same_run(a, b):
    for x, y in zip(_metrics(a), _metrics(b), strict=True):
        for key in ("loss", "rec_loss", "disc_loss", "adv_loss"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), (x["step"], key)
    want, got = _weights(a, 6), _weights(b, 6)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)


def _run_args(root, out, *extra):
    # fp32: what is compared is the split of the batch, not bf16's rounding in two summation orders.
    # Every masked token decoded: with half of 4 (decoder keep 0.5) Adam's first steps on near-zero
    # gradients magnify the summation order past the tolerance; the step tests above cover keep 0.5.
    return train_args(root, out, 6, "--dtype", "fp32", "--num-frames", "4", "--decoder-keep", "1", *extra, batch_size=4)


def test_a_run_with_both_flags_and_a_resume_without_them_is_the_plain_run(small_set, tmp_path, monkeypatch):
    from fmae.pretraining import train as trainer

    plain, both = tmp_path / "plain", tmp_path / "both"
    assert train_main(_run_args(small_set, plain)) == 0
    # Both flags until a crash in step 4 (a checkpoint at 3), then resumed without them: neither
    # is resume-fixed, since neither changes the update.
    real_step = trainer.Pretrainer.step

    def crash_in_step_four(self, *a, **k):
        if self.step_count == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_step(self, *a, **k)

    monkeypatch.setattr(trainer.Pretrainer, "step", crash_in_step_four)
    with pytest.raises(KeyboardInterrupt):
        train_main(_run_args(small_set, both, "--accum-steps", "2", "--grad-checkpointing"))
    monkeypatch.setattr(trainer.Pretrainer, "step", real_step)
    assert train_main(_run_args(small_set, both, "--resume")) == 0
    _assert_same_run(plain, both)


def test_a_batch_that_does_not_split_is_a_clear_error(small_set, tmp_path, capsys):
    assert train_main(_run_args(small_set, tmp_path / "run", "--accum-steps", "3")) == 2
    assert "must split evenly over 1 processes x 3 accum_steps" in capsys.readouterr().err


def test_both_flags_under_torchrun_match_one_plain_process(small_set, tmp_path):
    plain, two = tmp_path / "plain", tmp_path / "two"
    assert train_main(_run_args(small_set, plain)) == 0
    proc = torchrun("fmae.train", *_run_args(small_set, two, "--accum-steps", "2", "--grad-checkpointing"), out=two)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_run(plain, two)
