"""fmae.model.flops against torch's own count (FlopCounterMode) on small models.

Attention runs on the ``reference`` backend here: its matmuls are what FlopCounterMode
counts, whereas it has no formula for the CPU flash kernel behind SDPA.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fmae.masking import decoder_targets, num_decoder_targets, num_masked, random_mask
from fmae.model import create, get_config, patchify
from fmae.model.flops import block_forward_flops, decoder_flops, discriminator_flops, encoder_flops, step_flops
from fmae.ops import visible_index
from fmae.pretraining.step import PretrainConfig, Pretrainer

# 4 frames of 64 x 64: a 2 x 4 x 4 grid of 32 tokens; an odd MLP ratio and widths that
# differ everywhere, so a swapped symbol changes the count.
SMALL = dict(
    img_size=64,
    num_frames=4,
    attention_backend="reference",
    embed_dim=48,
    num_heads=3,
    depth=2,
    decoder_embed_dim=40,
    decoder_num_heads=2,
    decoder_depth=3,
    mlp_ratio=2.5,
    disc_dim=24,
    disc_depth=2,
)


def _counted(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("ratio", [0.0, 0.75])
def test_encoder_and_decoder_match_flop_counter(ratio):
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", **SMALL)
    c, B = model.config, 3
    g = torch.Generator().manual_seed(1)
    clip = torch.randn(B, 3, c.num_frames, c.img_size, c.img_size, generator=g)
    m = num_masked("random", c.grid, ratio)
    mask = random_mask(B, c.grid, ratio, g)
    visible, masked = visible_index(mask, m)
    cubes = patchify(clip, c.tubelet)

    def encoder():
        latent = model.forward_encoder(cubes, visible)
        latent.backward(torch.randn_like(latent))

    fwd, bwd = encoder_flops(c, B, c.num_tokens - m)
    assert _counted(lambda: model.forward_encoder(cubes, visible)) == fwd
    assert _counted(encoder) == fwd + bwd

    latent = torch.randn(B, c.num_tokens - m, c.embed_dim, requires_grad=True)

    def decoder(targets):
        pred = model.forward_decoder(latent, visible, targets)
        pred.backward(torch.randn_like(pred))

    fwd, bwd = decoder_flops(c, B, m)
    assert _counted(lambda: decoder(masked)) == fwd + bwd
    assert bwd == 2 * fwd
    if m:  # decoder masking: the visible tokens and K of the masked ones
        for keep in (0.5, 0.25):
            k = num_decoder_targets(m, keep)
            targets = decoder_targets(mask, keep, "running_cell", c.grid, generator=g, num_masked=m)
            fwd, bwd = decoder_flops(c, B, m, k)
            assert _counted(lambda: decoder(targets)) == fwd + bwd and fwd < decoder_flops(c, B, m)[0]


@pytest.mark.parametrize(
    "strategy,ratio,adv_weight,keep,hint",
    [
        ("random", 0.75, 0.0, 1.0, "none"),
        ("facial", 0.9, 0.1, 1.0, "none"),
        ("tube", 0.5, 0.1, 1.0, "none"),
        ("frame", 0.5, 0.0, 1.0, "none"),
        ("random", 0.75, 0.0, 0.5, "none"),
        ("facial", 0.9, 0.1, 0.5, "none"),
        ("tube", 0.5, 0.1, 0.25, "none"),
        ("facial", 0.75, 0.1, 0.5, "temporal_interp"),
        ("random", 0.5, 0.0, 1.0, "temporal_interp"),
        ("facial", 0.75, 0.1, 0.5, "interp_nearest"),
        ("tube", 0.5, 0.0, 1.0, "interp_nearest"),
    ],
)
def test_pretrain_step_matches_flop_counter(strategy, ratio, adv_weight, keep, hint):
    torch.manual_seed(0)
    config = get_config("fmae_vit_tiny", **SMALL, decoder_hint=hint)
    run = Pretrainer(
        config,
        PretrainConfig(strategy=strategy, mask_ratio=ratio, adv_weight=adv_weight, batch_size=2, decoder_keep=keep),
    )
    g = torch.Generator().manual_seed(2)
    clip = torch.randn(2, 3, config.num_frames, config.img_size, config.img_size, generator=g)
    size = (2, config.num_frames, config.img_size, config.img_size)
    regions = torch.randint(0, 7, size, generator=g, dtype=torch.uint8)
    expected = step_flops(config, 2, ratio, strategy, adv_weight, decoder_keep=keep)
    assert _counted(lambda: run.step(clip, regions, g)) == expected.total
    assert (expected.discriminator > 0) == (adv_weight > 0)
    assert expected.total == expected.encoder + expected.decoder + expected.discriminator


def test_discriminator_matches_flop_counter_alone():
    torch.manual_seed(0)
    config = get_config("fmae_vit_tiny", **SMALL)
    B, M = 2, 5
    run = Pretrainer(config, PretrainConfig(strategy="random", mask_ratio=0.5, adv_weight=0.1, batch_size=B))
    D = run.discriminator
    real = torch.randn(B, M, config.cube_dim)
    fake = torch.randn(B, M, config.cube_dim, requires_grad=True)

    def passes():  # as Pretrainer.step: D's update, then the generator's term through a frozen D
        (D(real).sum() + D(fake.detach()).sum()).backward()
        D.requires_grad_(False)
        D(fake).sum().backward()
        D.requires_grad_(True)

    assert _counted(passes) == discriminator_flops(config, B, M)


def test_paper_size_encoder_scales_with_visible_tokens():
    base = get_config("fmae_vit_base")
    n = base.num_tokens
    v = n - num_masked("random", base.grid, 0.9)
    ratio = sum(encoder_flops(base, 1, v)) / sum(encoder_flops(base, 1, n))
    # The linear layers scale with the tokens, attention with their square: the visible
    # tenth costs between a hundredth and a tenth (7.7 % for ViT-B: at N=1568 attention
    # is a quarter of the encoder's FLOPs).
    assert (v / n) ** 2 < ratio < v / n
    # A hand count of one ViT-B block over the 1568 tokens: 12·L·D² + 4·L²·D multiply-adds x2.
    assert block_forward_flops(1, 1568, 768, 3072) == 2 * 1568 * (12 * 768**2) + 4 * 1568**2 * 768


def test_decoder_keep_halves_vit_b_decoder():
    # The numbers: ViT-B, B=2, ratio 0.9: the decoder is 234 of the step's 401 GFLOP at keep 1.
    base = get_config("fmae_vit_base")
    full, half = step_flops(base, 2, 0.9), step_flops(base, 2, 0.9, decoder_keep=0.5)
    assert round(full.decoder / 1e9) == 234 and round(full.total / 1e9) == 401
    assert half.encoder == full.encoder and round(half.decoder / 1e9) == 106 and round(half.total / 1e9) == 273
    assert step_flops(base, 2, 0.9, decoder_keep=1.0) == full
    # The discriminator sees the K reconstructed cubes only.
    adv = step_flops(base, 2, 0.9, "facial", 0.1, decoder_keep=0.5)
    assert adv.discriminator == discriminator_flops(base, 2, num_decoder_targets(1411, 0.5))


def test_bad_counts_raise():
    c = get_config("fmae_vit_tiny")
    with pytest.raises(ValueError):
        encoder_flops(c, -1, 10)
    with pytest.raises(ValueError):
        decoder_flops(c, 1, c.num_tokens + 1)
    with pytest.raises(ValueError):
        step_flops(c, 2, 0.9, adv_weight=-1.0)
    with pytest.raises(ValueError):
        step_flops(c, 2, 1.5)
    with pytest.raises(ValueError):
        decoder_flops(c, 1, 10, 11)
    with pytest.raises(ValueError, match="keep"):
        step_flops(c, 2, 0.9, decoder_keep=0.0)
