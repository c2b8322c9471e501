import copy
import io
import json
import math

import pytest
import torch
import yaml
from train_helpers import train_args

from fmae.masking import make_mask, random_mask
from fmae.model import Discriminator, get_config
from fmae.model.losses import adversarial_loss, generator_loss
from fmae.pretraining.step import PretrainConfig, Pretrainer, WarmupCosine, param_groups
from fmae.train import main as train_main
from fmae.weights.checkpoint import load_checkpoint

# Tiny model on 4 frames of 32 x 32 (2 x 2 x 2 tokens); tubelet (2, 16, 16).
MODEL = get_config("fmae_vit_tiny", img_size=32, num_frames=4)


def _data(B=2):
    """A fixed, learnable batch (smooth moving waves) and blocky region maps."""
    t = torch.arange(4.0).view(4, 1, 1)
    y = torch.arange(32.0).view(1, 32, 1)
    x = torch.arange(32.0).view(1, 1, 32)
    clip = torch.stack(
        [torch.stack([torch.sin(0.3 * x + 0.2 * (c + 1) * y + 0.5 * t + b) for c in range(3)]) for b in range(B)]
    )
    coarse = torch.randint(0, 7, (B, 2, 2, 2), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    maps = coarse.repeat_interleave(2, 1).repeat_interleave(16, 2).repeat_interleave(16, 3)
    return clip, maps


def _trainer(seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(
        strategy="facial",
        mask_ratio=0.5,
        adv_weight=0.1,
        batch_size=2,
        base_lr=1e-3 * 256 / 2,
        warmup_steps=3,
        total_steps=30,
    )
    return Pretrainer(MODEL, PretrainConfig(**{**settings, **overrides}))


def test_warmup_cosine():
    f = WarmupCosine(warmup=4, total=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert math.isclose(f(9), 0.1 + 0.9 * 0.5)  # half way through the decay
    assert math.isclose(f(14), 0.1) and math.isclose(f(100), 0.1)
    assert WarmupCosine(0, 10)(0) == 1.0


def test_lr_scaling_and_schedule():
    cfg = PretrainConfig(base_lr=1.5e-4, batch_size=512)
    assert math.isclose(cfg.lr, 3e-4)
    pt = _trainer(warmup_steps=2, total_steps=5)
    clip, maps = _data()
    peak = pt.config.lr
    lrs = [pt.step(clip, maps)["lr"] for _ in range(3)]
    assert [round(v / peak, 6) for v in lrs] == [0.5, 1.0, 1.0]
    assert pt.optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    assert math.isclose(pt.disc_optimizer.param_groups[0]["lr"], pt.optimizer.param_groups[0]["lr"])


def test_weight_decay_groups():
    pt = _trainer()
    decay, no_decay = param_groups(pt.model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert any(p is pt.model.mask_token for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(pt.model.parameters()))


def test_reconstruction_loss_falls():
    pt = _trainer()
    clip, maps = _data()
    g = torch.Generator().manual_seed(0)
    losses = [float(pt.step(clip, maps, g)["rec_loss"]) for _ in range(30)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, losses
    assert pt.step_count == 30


def test_adversarial_term_changes_generator_gradients():
    torch.manual_seed(0)
    pt = _trainer()
    D = Discriminator.from_config(MODEL)
    clip, _ = _data()
    mask = random_mask(2, MODEL.grid, 0.5, torch.Generator().manual_seed(0))

    def grads(weight, loss_fn=None):
        pt.model.zero_grad()
        out = pt.model(clip, mask, 4)
        loss = loss_fn(out) if loss_fn else generator_loss(out.pred, out.target, D(out.pred), weight)[0]
        loss.backward()
        return [p.grad.clone() for p in pt.model.parameters()]

    off, on = grads(0.0), grads(0.5)
    adv = grads(None, lambda out: adversarial_loss(D(out.pred)))
    assert any(not torch.allclose(a, b) for a, b in zip(off, on))
    # Linear in λ: grad(λ = 0.5) = grad(λ = 0) + 0.5 · grad(L_adv).
    for a, b, c in zip(off, on, adv):
        torch.testing.assert_close(b, a + 0.5 * c, rtol=1e-4, atol=1e-6)


def test_adv_weight_zero_skips_the_discriminator():
    clip, maps = _data()
    off, on = _trainer(adv_weight=0.0), _trainer(adv_weight=0.5)
    assert off.discriminator is None and "discriminator" not in off.state_dict()
    d_before = copy.deepcopy(on.discriminator.state_dict())
    s_off = off.step(clip, maps, torch.Generator().manual_seed(0))
    s_on = on.step(clip, maps, torch.Generator().manual_seed(0))
    assert set(s_off) == {"lr", "loss", "rec_loss", "grad_norm", "skipped"}
    assert {"adv_loss", "disc_loss", "disc_grad_norm", "disc_skipped"} <= set(s_on)
    assert torch.equal(s_off["rec_loss"], s_on["rec_loss"])  # same init, same mask
    # The adversarial term moved the generator elsewhere; D took its own step.
    assert any(not torch.equal(a, b) for a, b in zip(off.model.parameters(), on.model.parameters()))
    assert any(not torch.equal(d_before[k], v) for k, v in on.discriminator.state_dict().items())
    assert all(p.requires_grad for p in on.discriminator.parameters())


def test_state_dict_round_trip_gives_identical_next_step():
    clip, maps = _data()
    a = _trainer(seed=0)
    for s in range(3):
        a.step(clip, maps, torch.Generator().manual_seed(s))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = _trainer(seed=1)  # different weights until loaded
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.step_count == 3 and b.lr == a.lr
    for _ in range(2):
        sa = a.step(clip, maps, torch.Generator().manual_seed(7))
        sb = b.step(clip, maps, torch.Generator().manual_seed(7))
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    with pytest.raises(ValueError, match="adv_weight"):
        _trainer(adv_weight=0.0).load_state_dict(a.state_dict())


def test_bfloat16_autocast_step():
    pt = _trainer(autocast="bfloat16", strategy="tube")
    clip, _ = _data()
    stats = pt.step(clip)
    assert all(math.isfinite(float(v)) for v in stats.values())
    assert pt.model.patch_embed.weight.dtype == torch.float32  # master weights stay float32


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match="strategy"):
        PretrainConfig(strategy="checkerboard")
    with pytest.raises(ValueError, match="mask_ratio"):
        PretrainConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="autocast"):
        PretrainConfig(autocast="float16")
    with pytest.raises(ValueError, match="adv_weight"):
        PretrainConfig(adv_weight=-0.1)
    with pytest.raises(ValueError, match="masks no token"):
        Pretrainer(MODEL, PretrainConfig(mask_ratio=0.05))
    pt = _trainer(adv_weight=0.0)
    clip, _ = _data()
    with pytest.raises(ValueError, match="region_maps"):
        pt.step(clip)
    with pytest.raises(ValueError, match="clip must be"):
        pt.step(clip[0])
    assert PretrainConfig.from_dict(PretrainConfig(betas=(0.8, 0.9)).to_dict()) == PretrainConfig(betas=(0.8, 0.9))


@pytest.mark.parametrize("fused", [True, False])
def test_non_finite_step_is_skipped_without_touching_weights(fused):
    clip, maps = _data()
    run = _trainer(fused=fused)
    run.step(clip, maps, torch.Generator().manual_seed(0))
    before = copy.deepcopy(run.state_dict())
    bad = clip.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    stats = run.step(bad, maps, torch.Generator().manual_seed(1))
    assert stats["skipped"].item() == 1.0 and stats["disc_skipped"].item() == 1.0
    after = copy.deepcopy(run.state_dict())
    for net in ("model", "discriminator"):
        for k, v in before[net].items():
            assert torch.equal(after[net][k], v), (net, k)
    for opt in ("optimizer", "disc_optimizer"):
        for i, state in before[opt]["state"].items():
            for k, v in state.items():
                assert torch.equal(after[opt]["state"][i][k], v), (opt, i, k)
    good = run.step(clip, maps, torch.Generator().manual_seed(2))
    assert good["skipped"].item() == 0.0 and torch.isfinite(good["loss"])
    assert any(not torch.equal(after["model"][k], v) for k, v in run.state_dict()["model"].items())


# Decoder masking (decoder_keep < 1): the decoder and both losses on K of the M masked cubes.


def test_decoder_keep_trains_on_the_chosen_cubes():
    pt = _trainer(decoder_keep=0.5)  # 8 tokens, 4 masked, 2 reconstructed
    assert (pt.num_masked, pt.num_targets, pt.decoder_masking) == (4, 2, True)
    seen = {}
    pt.model.register_forward_hook(lambda module, args, out: seen.update(out=out, args=args))
    pt.discriminator.register_forward_hook(lambda module, args, out: seen.update(disc=args[0].shape))
    clip, maps = _data()
    stats = pt.step(clip, maps, torch.Generator().manual_seed(0))
    out = seen["out"]
    assert out.pred.shape == out.target.shape == (2, 2, MODEL.cube_dim) and seen["disc"][1] == 2
    mask, targets = seen["args"][1], seen["args"][3]
    assert torch.equal(out.masked_index, targets) and mask.gather(1, targets).all()
    torch.testing.assert_close(stats["rec_loss"], ((out.pred.float() - out.target) ** 2).mean().detach())
    assert all(math.isfinite(float(v)) for v in stats.values())


def test_keep_one_masks_as_before():
    # Without decoder masking the step draws the same masks as before it existed, and no targets.
    pt = _trainer()
    _, maps = _data()
    mask, targets = pt._mask(2, maps, torch.Generator().manual_seed(3), torch.device("cpu"))
    want = make_mask(
        "facial",
        0.5,
        batch=2,
        grid=MODEL.grid,
        region_maps=maps,
        tubelet=MODEL.tubelet,
        generator=torch.Generator().manual_seed(3),
    )
    assert targets is None and torch.equal(mask, want) and not pt.decoder_masking and pt.num_targets == 4
    # With it, the mask is the same and the targets come after it from the same generator.
    half = _trainer(decoder_keep=0.5, decoder_strategy="facial")
    g = torch.Generator().manual_seed(3)
    mask2, targets2 = half._mask(2, maps, g, torch.device("cpu"))
    assert torch.equal(mask2, want) and targets2.shape == (2, 2) and mask2.gather(1, targets2).all()


def test_reconstruction_loss_falls_with_decoder_keep():
    pt = _trainer(decoder_keep=0.5, adv_weight=0.0)
    clip, maps = _data()
    g = torch.Generator().manual_seed(0)
    losses = [float(pt.step(clip, maps, g)["rec_loss"]) for _ in range(30)]
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5]), losses


@pytest.mark.parametrize(
    "strategy,decoder_strategy", [("random", "running_cell"), ("facial", "facial"), ("tube", "facial")]
)
def test_decoder_targets_under_ddp_are_the_global_batchs(monkeypatch, strategy, decoder_strategy):
    """Each of two ranks keeps its rows of the global batch's mask and targets: together what one
    process draws for the whole batch (the facial decoder strategy gathers every rank's region maps)."""
    from fmae.pretraining import step as step_module

    big = get_config("fmae_vit_tiny", img_size=64, num_frames=4)  # 32 tokens
    _, maps = _data(B=4)
    maps = maps.repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.manual_seed(0)
    pt = Pretrainer(
        big,
        PretrainConfig(
            strategy=strategy,
            mask_ratio=0.75,
            adv_weight=0.0,
            batch_size=4,
            decoder_keep=0.5,
            decoder_strategy=decoder_strategy,
        ),
    )
    want_mask, want_targets = pt._mask(4, maps, torch.Generator().manual_seed(5), torch.device("cpu"))
    got = []
    for rank in (0, 1):
        monkeypatch.setattr(step_module, "_world", lambda rank=rank: (rank, 2))
        monkeypatch.setattr(
            step_module.dist, "all_gather", lambda out, t: [o.copy_(m) for o, m in zip(out, maps.chunk(2))]
        )
        got.append(pt._mask(2, maps.chunk(2)[rank], torch.Generator().manual_seed(5), torch.device("cpu")))
    assert torch.equal(torch.cat([m for m, _ in got]), want_mask)
    assert torch.equal(torch.cat([t for _, t in got]), want_targets)


def test_decoder_keep_settings_are_checked():
    with pytest.raises(ValueError, match="decoder_keep"):
        PretrainConfig(decoder_keep=0.0)
    with pytest.raises(ValueError, match="decoder_keep"):
        PretrainConfig(decoder_keep=1.5)
    with pytest.raises(ValueError, match="decoder strategy"):
        PretrainConfig(decoder_strategy="checkerboard")
    with pytest.raises(ValueError, match="keeps none"):
        Pretrainer(MODEL, PretrainConfig(mask_ratio=0.5, decoder_keep=0.1))
    with pytest.raises(ValueError, match="region_maps"):  # the facial decoder strategy reads the region maps
        _trainer(strategy="random", decoder_keep=0.5, decoder_strategy="facial").step(_data()[0])
    config = PretrainConfig(decoder_keep=0.5, decoder_strategy="random")
    assert PretrainConfig.from_dict(config.to_dict()) == config


# A pre-training run with decoder masking, end to end (python -m fmae.train).


def _run_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_run_with_decoder_keep(small_set, tmp_path):
    out = tmp_path / "run"
    assert train_main(train_args(small_set, out, 6, "--decoder-keep", "0.5", "--image-every", "3")) == 0
    rows = _run_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["rec_loss"]) and math.isfinite(r["adv_loss"]) for r in rows)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["decoder_keep"] == 0.5 and saved["decoder_strategy"] == "running_cell"
    assert (out / "recon-00000006.png").is_file()
    ckpt = load_checkpoint(out / "checkpoints" / "ckpt-00000006.safetensors")
    assert ckpt["config"]["decoder_keep"] == 0.5


def test_resume_with_decoder_keep_is_exact(small_set, tmp_path, monkeypatch):
    from fmae.pretraining import train as trainer

    args = ("--num-frames", "4", "--ckpt-every", "2", "--decoder-keep", "0.5", "--decoder-strategy", "random")
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert train_main(train_args(small_set, straight, 6, *args)) == 0
    real_step = trainer.Pretrainer.step

    def crash_after_five(self, *a, **k):
        if self.step_count == 5:
            raise KeyboardInterrupt("simulated crash")
        return real_step(self, *a, **k)

    monkeypatch.setattr(trainer.Pretrainer, "step", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        train_main(train_args(small_set, broken, 6, *args))
    monkeypatch.setattr(trainer.Pretrainer, "step", real_step)
    # The decoder masking is part of what a resume must keep.
    assert train_main(train_args(small_set, broken, 6, *args[:-2], "--resume")) == 2
    assert train_main(train_args(small_set, broken, 6, *args[:4], "--resume")) == 2
    assert train_main(train_args(small_set, broken, 6, *args, "--resume")) == 0
    want = {r["step"]: r for r in _run_metrics(straight)}
    got = {r["step"]: r for r in _run_metrics(broken)}
    for step in (5, 6):
        for key in ("loss", "rec_loss", "adv_loss", "disc_loss"):
            assert got[step][key] == want[step][key], (step, key)
    a = load_checkpoint(straight / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    b = load_checkpoint(broken / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
