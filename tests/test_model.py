import pytest
import torch
import torch.nn.functional as F

from fmae.masking import num_masked, random_mask
from fmae.model import (
    FMAE,
    MODEL_CONFIGS,
    Discriminator,
    FMAEConfig,
    create,
    get_config,
    normalize_cubes,
    patchify,
    sinusoid_table,
    unpatchify,
)
from fmae.ops import visible_index

# Tiny model on 4 frames of 32 x 32: a token grid of 2 x 2 x 2.
SMALL = dict(img_size=32, num_frames=4)


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return create("fmae_vit_tiny", **{**SMALL, **overrides})


def _batch(model, B=2, ratio=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    clip = torch.randn(B, c.in_chans, c.num_frames, c.img_size, c.img_size, generator=g)
    mask = random_mask(B, c.grid, ratio, g)
    return clip, mask, num_masked("random", c.grid, ratio)


def test_registry_sizes():
    base = get_config("fmae_vit_base")
    assert (base.embed_dim, base.depth, base.num_heads) == (768, 12, 12)  # the paper's ViT-B
    assert base.grid == (8, 14, 14) and base.num_tokens == 1568 and base.cube_dim == 1536
    assert set(MODEL_CONFIGS) == {"fmae_vit_tiny", "fmae_vit_small", "fmae_vit_base", "fmae_vit_large"}
    for name in MODEL_CONFIGS:
        c = get_config(name)
        assert c.embed_dim > c.decoder_embed_dim  # the decoder is the narrower one
    assert get_config("fmae_vit_tiny", img_size=96).grid == (8, 6, 6)
    assert FMAEConfig.from_dict(get_config("fmae_vit_small").to_dict()) == get_config("fmae_vit_small")


def test_output_shapes():
    model = _model()
    c = model.config
    clip, mask, k = _batch(model, B=3, ratio=0.75)
    out = model(clip, mask, k)
    assert out.pred.shape == out.target.shape == (3, k, c.cube_dim)
    assert out.target.dtype == torch.float32
    assert torch.equal(out.masked_index, visible_index(mask, k)[1])
    assert model(clip, mask).pred.shape == out.pred.shape  # num_masked read from the mask
    assert model.forward_features(clip).shape == (3, c.embed_dim)
    assert model.forward_features(clip, pool=False).shape == (3, c.num_tokens, c.embed_dim)
    assert Discriminator.from_config(c)(out.pred).shape == (3, k)
    assert model.reconstruct(clip, mask, k).shape == clip.shape


def test_patchify_token_order_and_inverse():
    # Value of every pixel = VideoMAE index of its token: n = (ti * Hp + hi) * Wp + wi.
    tubelet, (T, H, W) = (2, 4, 8), (6, 8, 16)
    t, h, w = torch.meshgrid(torch.arange(T) // 2, torch.arange(H) // 4, torch.arange(W) // 8, indexing="ij")
    index = ((t * 2 + h) * 2 + w).float()
    clip = index.expand(2, 3, T, H, W)
    cubes = patchify(clip, tubelet)
    assert cubes.shape == (2, 12, 2 * 4 * 8 * 3)
    assert torch.equal(cubes, torch.arange(12.0).view(1, 12, 1).expand_as(cubes))
    noise = torch.randn(2, 3, T, H, W)
    assert torch.equal(unpatchify(patchify(noise, tubelet), (3, 2, 2), tubelet), noise)
    # A cube is flattened (t, h, w, c): channel varies fastest.
    rgb = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(1, 3, T, H, W)
    assert patchify(rgb, tubelet)[0, 0, :6].tolist() == [0, 1, 2, 0, 1, 2]


def test_patch_embedding_equals_conv3d():
    model = _model()
    c = model.config
    clip = torch.randn(2, 3, c.num_frames, c.img_size, c.img_size)
    conv = F.conv3d(clip, model.patch_embed_conv3d_weight(), model.patch_embed.bias, stride=c.tubelet)
    torch.testing.assert_close(model.patch_embed(patchify(clip, c.tubelet)), conv.flatten(2).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)


def test_targets():
    clip, mask, k = _batch(_model())
    model = _model(norm_pix_loss=False)
    out = model(clip, mask, k)
    raw = patchify(clip, model.config.tubelet).gather(1, out.masked_index.unsqueeze(-1).expand(-1, -1, out.target.shape[-1]))
    assert torch.equal(out.target, raw)
    normed = _model(norm_pix_loss=True)(clip, mask, k).target.unflatten(-1, (-1, 3))
    torch.testing.assert_close(normed.mean(dim=-2), torch.zeros(2, k, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var(dim=-2), torch.ones(2, k, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalize_cubes(raw, 3).unflatten(-1, (-1, 3)), normed)


def test_encoder_sees_only_visible_cubes():
    model = _model()
    clip, mask, k = _batch(model, ratio=0.5)
    pred = model(clip, mask, k).pred
    c = model.config
    cubes = patchify(clip, c.tubelet)
    # Changing masked cubes must not change the prediction; changing a visible one must.
    changed = torch.where(mask.unsqueeze(-1), torch.randn_like(cubes), cubes)
    assert torch.equal(model(unpatchify(changed, c.grid, c.tubelet), mask, k).pred, pred)
    visible = visible_index(mask, k)[0]
    changed = cubes.clone()
    changed[0, visible[0, 0]] += 1.0
    assert not torch.allclose(model(unpatchify(changed, c.grid, c.tubelet), mask, k).pred[0], pred[0])
    # forward_features sees everything.
    feats = model.forward_features(clip)
    changed = torch.where(mask.unsqueeze(-1), cubes + 1.0, cubes)
    assert not torch.allclose(model.forward_features(unpatchify(changed, c.grid, c.tubelet)), feats)


def test_reconstruct_keeps_visible_cubes():
    model = _model()
    clip, mask, k = _batch(model)
    rec = model.reconstruct(clip, mask, k)
    c = model.config
    keep = ~mask.unsqueeze(-1).expand(-1, -1, c.cube_dim)
    assert torch.equal(patchify(rec, c.tubelet)[keep], patchify(clip, c.tubelet)[keep])


def test_reference_ops_give_the_same_model():
    fast = _model()
    ref = FMAE(get_config("fmae_vit_tiny", **SMALL, backend="reference", attention_backend="reference"))
    ref.load_state_dict(fast.state_dict())
    clip, mask, k = _batch(fast, B=3, ratio=0.75, seed=4)
    outs, grads = [], []
    for model in (fast, ref):
        out = model(clip, mask, k)
        ((out.pred - out.target) ** 2).mean().backward()
        outs.append(out)
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[0].pred, outs[1].pred, rtol=1e-4, atol=1e-5)
    assert torch.equal(outs[0].target, outs[1].target)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_gather_scatter_backends_bitwise():
    # Only the token ops differ: they move numbers without arithmetic, so results match exactly.
    fast = _model()
    ref = FMAE(get_config("fmae_vit_tiny", **SMALL, backend="reference"))
    ref.load_state_dict(fast.state_dict())
    clip, mask, k = _batch(fast, seed=6)
    assert torch.equal(fast(clip, mask, k).pred, ref(clip, mask, k).pred)


def test_position_embeddings_are_fixed():
    table = sinusoid_table(5, 6)
    assert table[0].tolist() == [0, 1, 0, 1, 0, 1]
    torch.testing.assert_close(table[3, 0], torch.tensor(3.0).sin())
    model = _model()
    assert "pos_embed" not in model.state_dict() and not any("pos_embed" in n for n, _ in model.named_parameters())


def test_bad_input_raises():
    model = _model()
    clip, mask, k = _batch(model)
    with pytest.raises(ValueError, match="unknown model"):
        create("fmae_vit_huge")
    with pytest.raises(TypeError):
        get_config("fmae_vit_tiny", patch=8)
    with pytest.raises(ValueError, match="divide"):
        get_config("fmae_vit_tiny", img_size=40)
    with pytest.raises(ValueError, match="heads"):
        get_config("fmae_vit_tiny", num_heads=5)
    with pytest.raises(ValueError, match="clip must be"):
        model(clip[:, :, :2], mask, k)
    with pytest.raises(TypeError, match="floating"):
        model(clip.to(torch.uint8), mask, k)
    with pytest.raises(ValueError, match="mask must be"):
        model(clip, mask[:, :-1], k)
