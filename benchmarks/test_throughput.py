"""Encoder throughput against the masking ratio: forward + backward of the encoder
alone on the gathered visible tokens (B=2, 16×224², random mask, the compute dtype
FMAE picks), ratio 0 — no masking, all 1568 tokens — as each group's baseline.

The encoder only ever sees the visible tokens, so its time should follow them: at
ratio 0.9 about a tenth of its time at ratio 0 (a little less in FLOPs, since attention
is quadratic in the tokens: ``flops_vs_unmasked``), unless some work still runs over
all tokens. The speed-up column of the group is that check: 1 / (time at ratio r ÷
time at ratio 0). The whole step's throughput against the ratio, beside HF's, is in
``test_pretrain_step.py``; the loader's against the temporal stride in
``test_loader.py``.

``extra_info``: ``visible_tokens`` V per clip, ``visible_fraction`` V/N, ``flops``
(:func:`fmae.model.flops.encoder_flops`, forward + backward), ``flops_vs_unmasked`` (the
ideal time ratio), ``visible_tokens_per_s``, ``flops_per_s`` and, in the JSON,
``fraction_of_peak`` (of the run's best square-matmul FLOP/s in the compute dtype,
``benchmarks/conftest.py``). Without ``--full`` only
the tiny model runs; under ``--benchmark-disable`` (a smoke run, nothing timed) on
8×64² clips.

The decoder against the decoder keep (decoder masking, VideoMAE V2's dual masking): its
forward + backward from the encoder's latent to the predicted cubes at ratio 0.9, on the
visible tokens plus keep 1, 0.5 or 0.25 of the masked ones (``running_cell``), keep 1 as
each group's baseline. Its time should follow its tokens ``V + K``: the speed-up column
is that check. ``extra_info``: ``decoder_tokens`` ``V + K`` per clip, ``flops``
(:func:`fmae.model.flops.decoder_flops`, forward + backward), ``flops_vs_keep1`` (the ideal
time ratio), ``decoder_tokens_per_s``, ``flops_per_s`` and ``fraction_of_peak``.
"""

import contextlib

import pytest
import torch

from fmae.benchmarking.timing import synchronize
from fmae.masking import decoder_targets, num_decoder_targets, num_masked, random_mask
from fmae.model import create, patchify
from fmae.model.flops import decoder_flops, encoder_flops
from fmae.ops import visible_index
from fmae.runtime.device import resolve_device, resolve_dtype

B, IMG, FRAMES = 2, 224, 16
SMOKE_IMG, SMOKE_FRAMES = 64, 8
RATIOS = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95]
KEEPS = [1.0, 0.5, 0.25]
DECODER_RATIO = 0.9
DEVICE = resolve_device("auto")
DTYPE = resolve_dtype("auto", DEVICE)
MODELS = ["fmae_vit_tiny", pytest.param("fmae_vit_base", marks=pytest.mark.full)]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("model_name", MODELS)
def test_encoder_vs_ratio(benchmark, measure, matmul_peak, model_name, ratio):
    benchmark.group = f"encoder fwd+bwd {model_name} B={B} {FRAMES}x{IMG}^2 {str(DTYPE)[6:]} {DEVICE.type}"
    img, frames = (SMOKE_IMG, SMOKE_FRAMES) if benchmark.disabled else (IMG, FRAMES)
    torch.manual_seed(0)
    model = create(model_name, img_size=img, num_frames=frames).to(DEVICE).train()
    c = model.config
    g = torch.Generator().manual_seed(0)
    cubes = patchify(torch.randn(B, 3, frames, img, img, generator=g), c.tubelet).to(DEVICE)
    m = num_masked("random", c.grid, ratio)
    visible, _ = visible_index(random_mask(B, c.grid, ratio, g).to(DEVICE), m)
    v = c.num_tokens - m
    grad = torch.randn(B, v, c.embed_dim, generator=g).to(DEVICE)
    autocast = torch.autocast(DEVICE.type, dtype=DTYPE) if DTYPE != torch.float32 else contextlib.nullcontext()

    def run():
        model.zero_grad(set_to_none=True)
        with autocast:
            latent = model.forward_encoder(cubes, visible)
        latent.backward(grad.to(latent.dtype))
        synchronize(DEVICE)
        return latent.detach()

    latent = measure(run, impl=f"ratio {ratio}", baseline=ratio == 0.0, rounds=3)
    assert latent.shape == (B, v, c.embed_dim) and torch.isfinite(latent).all()
    assert model.patch_embed.weight.grad is not None
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.min
    flops = sum(encoder_flops(c, B, v))
    benchmark.extra_info.update(
        visible_tokens=v,
        visible_fraction=round(v / c.num_tokens, 4),
        flops=flops,
        flops_vs_unmasked=round(flops / sum(encoder_flops(c, B, c.num_tokens)), 4),
        visible_tokens_per_s=round(B * v / t, 1),
        flops_per_s=round(flops / t),
        matmul_peak=matmul_peak.sample(DTYPE, DEVICE),
    )


@pytest.mark.parametrize("keep", KEEPS)
@pytest.mark.parametrize("model_name", MODELS)
def test_decoder_vs_keep(benchmark, measure, matmul_peak, model_name, keep):
    benchmark.group = (
        f"decoder fwd+bwd {model_name} B={B} {FRAMES}x{IMG}^2 ratio={DECODER_RATIO} {str(DTYPE)[6:]} {DEVICE.type}"
    )
    img, frames = (SMOKE_IMG, SMOKE_FRAMES) if benchmark.disabled else (IMG, FRAMES)
    torch.manual_seed(0)
    model = create(model_name, img_size=img, num_frames=frames).to(DEVICE).train()
    c = model.config
    g = torch.Generator().manual_seed(0)
    m = num_masked("random", c.grid, DECODER_RATIO)
    mask = random_mask(B, c.grid, DECODER_RATIO, g)
    visible, _ = visible_index(mask, m)
    targets = decoder_targets(mask, keep, "running_cell", c.grid, generator=g, num_masked=m)
    visible, targets = visible.to(DEVICE), targets.to(DEVICE)
    k = num_decoder_targets(m, keep)
    latent = torch.randn(B, c.num_tokens - m, c.embed_dim, generator=g).to(DEVICE).requires_grad_()
    grad = torch.randn(B, k, c.cube_dim, generator=g).to(DEVICE)
    autocast = torch.autocast(DEVICE.type, dtype=DTYPE) if DTYPE != torch.float32 else contextlib.nullcontext()

    def run():
        model.zero_grad(set_to_none=True)
        latent.grad = None
        with autocast:
            pred = model.forward_decoder(latent, visible, targets)
        pred.backward(grad.to(pred.dtype))
        synchronize(DEVICE)
        return pred.detach()

    pred = measure(run, impl=f"keep {keep:g}", baseline=keep == 1.0, rounds=3)
    assert pred.shape == (B, k, c.cube_dim) and torch.isfinite(pred).all()
    assert model.mask_token.grad is not None and latent.grad is not None
    if benchmark.disabled:
        return
    t = benchmark.stats.stats.min
    flops = sum(decoder_flops(c, B, m, k))
    tokens = c.num_tokens - m + k
    benchmark.extra_info.update(
        decoder_keep=keep,
        decoder_tokens=tokens,
        flops=flops,
        flops_vs_keep1=round(flops / sum(decoder_flops(c, B, m)), 4),
        decoder_tokens_per_s=round(B * tokens / t, 1),
        flops_per_s=round(flops / t),
        matmul_peak=matmul_peak.sample(DTYPE, DEVICE),
    )
