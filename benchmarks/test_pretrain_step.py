"""One pre-training step (forward, backward, optimiser) in clips/s, FMAE against HF
``transformers``' ``VideoMAEForPreTraining`` at the same shapes and masking ratio, in
the same run (HF is each group's baseline).

Clips are 16×224×224, B=2, in the compute dtype FMAE picks for this machine
(:func:`fmae.device.resolve_dtype`). Three FMAE variants:

- ``fmae_random_mae``: random mask, no adversarial loss — the same work as HF's step;
- ``fmae_facial_mae``: the facial mask (its region histogram and sort included);
- ``fmae_facial_adv``: the full FMAE step, with the discriminator update (λ = 0.1).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from fmae.device import resolve_device, resolve_dtype
from fmae.model import get_config
from fmae.pretrain import PretrainConfig, Pretrainer

B, IMG, FRAMES = 2, 224, 16
RATIOS = [0.5, 0.75, 0.9, 0.95]
DEVICE = resolve_device("auto")
DTYPE = resolve_dtype("auto", DEVICE)


def _hf_step(model_name: str, ratio: float):
    transformers = pytest.importorskip("transformers", reason="HF comparison needs `pip install transformers`")
    c = get_config(model_name, img_size=IMG, num_frames=FRAMES)
    hf_config = transformers.VideoMAEConfig(
        image_size=IMG, num_frames=FRAMES, tubelet_size=c.tubelet[0], patch_size=c.tubelet[1],
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio), decoder_hidden_size=c.decoder_embed_dim,
        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_embed_dim * c.mlp_ratio), norm_pix_loss=True)
    model = transformers.VideoMAEForPreTraining(hf_config).to(DEVICE).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(B, FRAMES, 3, IMG, IMG, generator=g).to(DEVICE)  # HF's layout: [B, T, C, H, W]
    n, k = c.num_tokens, round(ratio * c.num_tokens)
    mask = (torch.rand(B, n, generator=g).argsort(dim=1) < k).to(DEVICE)
    autocast = torch.autocast(DEVICE.type, dtype=DTYPE) if DTYPE != torch.float32 else contextlib.nullcontext()

    def step():
        with autocast:
            loss = model(pixels, bool_masked_pos=mask).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _fmae_step(model_name: str, ratio: float, strategy: str, adv_weight: float):
    torch.manual_seed(0)
    run = Pretrainer(get_config(model_name, img_size=IMG, num_frames=FRAMES),
                     PretrainConfig(strategy=strategy, mask_ratio=ratio, adv_weight=adv_weight, batch_size=B,
                                    autocast="bfloat16" if DTYPE == torch.bfloat16 else None), device=DEVICE)
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(B, 3, FRAMES, IMG, IMG, generator=g).to(DEVICE)
    # Blocky random region maps: each 8x8 pixel patch one region, like parsed faces' patches.
    regions = torch.randint(0, 7, (B, FRAMES, IMG // 8, IMG // 8), generator=g, dtype=torch.uint8)
    regions = regions.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3).to(DEVICE)
    mask_gen = torch.Generator(device=DEVICE).manual_seed(0)
    return lambda: run.step(clip, regions, mask_gen)["loss"]


IMPLS = {
    "hf_videomae": lambda name, ratio: _hf_step(name, ratio),
    "fmae_random_mae": lambda name, ratio: _fmae_step(name, ratio, "random", 0.0),
    "fmae_facial_mae": lambda name, ratio: _fmae_step(name, ratio, "facial", 0.0),
    "fmae_facial_adv": lambda name, ratio: _fmae_step(name, ratio, "facial", 0.1),
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("model_name", ["fmae_vit_tiny", "fmae_vit_base"])
def test_pretrain_step(benchmark, measure, model_name, ratio, impl):
    benchmark.group = f"pretrain step {model_name} B={B} {FRAMES}x{IMG}^2 ratio={ratio} {str(DTYPE)[6:]} {DEVICE.type}"
    step = IMPLS[impl](model_name, ratio)
    rounds = 3 if model_name == "fmae_vit_base" else 8
    loss = measure(step, impl=impl, baseline=impl == "hf_videomae", rounds=rounds)
    assert torch.isfinite(loss)
    if benchmark.stats:
        benchmark.extra_info["clips_per_s"] = round(B / benchmark.stats.stats.min, 3)
