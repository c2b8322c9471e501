import copy
import io
import math

import pytest
import torch

from fmae.losses import adversarial_loss, generator_loss
from fmae.masking import random_mask
from fmae.model import Discriminator, get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer, WarmupCosine, param_groups

# Tiny model on 4 frames of 32 x 32 (2 x 2 x 2 tokens); tubelet (2, 16, 16).
MODEL = get_config("fmae_vit_tiny", img_size=32, num_frames=4)


def _data(B=2):
    """A fixed, learnable batch (smooth moving waves) and blocky region maps."""
    t = torch.arange(4.0).view(4, 1, 1)
    y = torch.arange(32.0).view(1, 32, 1)
    x = torch.arange(32.0).view(1, 1, 32)
    clip = torch.stack([torch.stack([torch.sin(0.3 * x + 0.2 * (c + 1) * y + 0.5 * t + b) for c in range(3)]) for b in range(B)])
    coarse = torch.randint(0, 7, (B, 2, 2, 2), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    maps = coarse.repeat_interleave(2, 1).repeat_interleave(16, 2).repeat_interleave(16, 3)
    return clip, maps


def _trainer(seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(strategy="facial", mask_ratio=0.5, adv_weight=0.1, batch_size=2, base_lr=1e-3 * 256 / 2,
                    warmup_steps=3, total_steps=30)
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
