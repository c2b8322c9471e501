import pytest
import torch
import torch.nn.functional as F

from fmae.masking import decoder_targets, num_decoder_targets, num_masked, random_mask
from fmae.model import (
    FMAE,
    MODEL_CONFIGS,
    Discriminator,
    FMAEConfig,
    create,
    get_config,
    grid_sinusoid_table,
    normalize_cubes,
    patchify,
    sinusoid_table,
    unpatchify,
)
from fmae.ops import gather_tokens, visible_index

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
    torch.testing.assert_close(
        model.patch_embed(patchify(clip, c.tubelet)), conv.flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-5
    )


def test_targets():
    clip, mask, k = _batch(_model())
    model = _model(norm_pix_loss=False)
    out = model(clip, mask, k)
    index = out.masked_index.unsqueeze(-1).expand(-1, -1, out.target.shape[-1])
    raw = patchify(clip, model.config.tubelet).gather(1, index)
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


# Architecture options for converted models (fmae.interop): defaults are FMAE's own.

NATIVE_KEYS = {
    "img_size",
    "num_frames",
    "tubelet",
    "in_chans",
    "embed_dim",
    "depth",
    "num_heads",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
    "mlp_ratio",
    "norm_pix_loss",
    "disc_dim",
    "disc_depth",
    "backend",
    "attention_backend",
}


def test_default_config_reads_and_writes_as_before():
    # The dict (hence fingerprints and checkpoints) of a native config is what it was before the options.
    config = get_config("fmae_vit_tiny", **SMALL)
    assert set(config.to_dict()) == NATIVE_KEYS
    old = {k: v for k, v in config.to_dict().items()}
    assert FMAEConfig.from_dict(old) == config
    changed = get_config("fmae_vit_tiny", **SMALL, qkv_bias="qv", pooling="mean_norm", norm_eps=1e-5)
    assert set(changed.to_dict()) - NATIVE_KEYS == {"qkv_bias", "pooling", "norm_eps"}
    assert FMAEConfig.from_dict(changed.to_dict()) == changed
    with pytest.raises(ValueError, match="pooling"):
        get_config("fmae_vit_tiny", pooling="max")
    with pytest.raises(ValueError, match="qkv_bias"):
        get_config("fmae_vit_tiny", qkv_bias="k")
    with pytest.raises(ValueError, match="epsilon"):
        get_config("fmae_vit_tiny", layer_norm_eps=0.0)


def test_default_blocks_are_unchanged():
    model = _model()
    assert set(model.state_dict()) == set(_model(qkv_bias="qkv").state_dict())
    keys = model.state_dict()
    assert "blocks.0.attn.qkv.bias" in keys and "blocks.0.gamma_1" not in keys and "fc_norm.weight" not in keys
    assert model.blocks[0].norm1.eps == model.norm.eps == model.decoder_norm.eps == 1e-6


def test_qv_bias_keeps_the_key_bias_at_zero():
    model = _model(qkv_bias="qv")
    keys = model.state_dict()
    assert "blocks.0.attn.q_bias" in keys and "decoder_blocks.0.attn.v_bias" in keys
    assert "blocks.0.attn.qkv.bias" not in keys
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 5, model.config.embed_dim)
    full = torch.nn.Linear(*attn.qkv.weight.shape[::-1])
    D = model.config.embed_dim
    with torch.no_grad():
        full.weight.copy_(attn.qkv.weight)
        full.bias.copy_(torch.cat([attn.q_bias, torch.zeros(D), attn.v_bias]))
        q, k, v = full(x).reshape(2, 5, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        ref = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, D))
        torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-6)
        # A key bias changes nothing: the softmax ignores a shift of a query's scores.
        full.bias[D : 2 * D] = torch.randn(D)
        q, k, v = full(x).reshape(2, 5, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        shifted = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, D))
        torch.testing.assert_close(shifted, ref, rtol=1e-5, atol=1e-5)


def test_layer_scale_and_epsilons():
    model = _model(init_values=0.1, decoder_init_values=1.0, layer_norm_eps=1e-5, norm_eps=1e-4, decoder_norm_eps=1e-3)
    assert torch.equal(model.blocks[1].gamma_1, torch.full((model.config.embed_dim,), 0.1))
    assert torch.equal(model.decoder_blocks[0].gamma_2, torch.ones(model.config.decoder_embed_dim))
    assert model.blocks[0].norm2.eps == model.decoder_blocks[0].norm1.eps == 1e-5
    assert (model.norm.eps, model.decoder_norm.eps) == (1e-4, 1e-3)
    block, x = model.blocks[0], torch.randn(2, 3, model.config.embed_dim)
    with torch.no_grad():
        block.gamma_1.normal_()
        block.gamma_2.normal_()
        h = x + block.gamma_1 * block.attn(block.norm1(x))
        torch.testing.assert_close(block(x), h + block.gamma_2 * block.mlp(block.norm2(h)))
    clip, mask, k = _batch(model)
    assert model(clip, mask, k).pred.shape == (2, k, model.config.cube_dim)


@pytest.mark.parametrize("pooling", ["norm_mean", "mean_norm", "mean_fc_norm", "mean"])
def test_pooling(pooling):
    model = _model(pooling=pooling)
    clip, _, _ = _batch(model)
    with torch.no_grad():
        for m in model.modules():  # non-trivial norms
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_()
                m.bias.normal_()
        tokens, pooled = model.forward_features(clip, pool=False), model.forward_features(clip)
        x = model.patch_embed(patchify(clip, model.config.tubelet)) + model.pos_embed
        for block in model.blocks:
            x = block(x)
    want_tokens = {"norm_mean": model.norm, "mean_norm": model.norm}.get(pooling, lambda t: t)(x)
    want_pooled = {
        "norm_mean": lambda: model.norm(x).mean(1),
        "mean_norm": lambda: model.norm(x.mean(1)),
        "mean_fc_norm": lambda: model.fc_norm(x.mean(1)),
        "mean": lambda: x.mean(1),
    }[pooling]()
    torch.testing.assert_close(tokens, want_tokens)
    torch.testing.assert_close(pooled, want_pooled)
    assert ("fc_norm.weight" in model.state_dict()) == (pooling == "mean_fc_norm")
    assert ("norm.weight" in model.state_dict()) == (pooling in ("norm_mean", "mean_norm"))
    with torch.no_grad():  # the decoder gets the tokens
        every = torch.arange(model.config.num_tokens).expand(2, -1)
        torch.testing.assert_close(model.forward_encoder(patchify(clip, model.config.tubelet), every), tokens)


def test_factorised_table_gives_each_axis_its_own_sinusoid():
    grid, dim = (4, 3, 5), 20  # 6 columns for the row, 6 for the column, 8 for time
    table = grid_sinusoid_table(grid, dim)
    assert table.shape == (60, 20) and table.dtype == torch.float32
    t, h, w = (i.flatten() for i in torch.meshgrid(*map(torch.arange, grid), indexing="ij"))
    torch.testing.assert_close(table[:, :6], sinusoid_table(3, 6)[h])
    torch.testing.assert_close(table[:, 6:12], sinusoid_table(5, 6)[w])
    torch.testing.assert_close(table[:, 12:], sinusoid_table(4, 8)[t])
    with pytest.raises(ValueError, match="even width"):
        grid_sinusoid_table(grid, 7)
    model = _model(position_embedding="sincos_thw")
    assert "pos_embed" not in model.state_dict()  # rebuilt from the config, like sincos
    torch.testing.assert_close(model.decoder_pos_embed, grid_sinusoid_table(model.config.grid, 128))
    clip, mask, k = _batch(model)
    assert model(clip, mask, k).pred.shape == (2, k, model.config.cube_dim)


def test_position_embedding_kinds():
    assert isinstance(_model(position_embedding="learned").pos_embed, torch.nn.Parameter)
    learned = _model(position_embedding="learned").state_dict()
    assert "pos_embed" in learned and "decoder_pos_embed" not in learned
    fixed = _model(position_embedding="fixed")
    assert {"pos_embed", "decoder_pos_embed"} <= set(fixed.state_dict())
    assert not any("pos_embed" in n for n, _ in fixed.named_parameters())
    torch.testing.assert_close(fixed.pos_embed, _model().pos_embed)
    model = _model(decoder_embed_bias=False)
    assert model.decoder_embed.bias is None
    clip, mask, k = _batch(model)
    assert model(clip, mask, k).pred.shape == (2, k, model.config.cube_dim)


# Decoder masking: the decoder on the visible tokens plus the chosen masked ones.


def _decoder_before_decoder_input(model, latent, visible, mask, masked):
    """The decoder as it was before fmae.ops.decoder_input: every token on the grid
    (scatter, mask token where masked, position table), gather the masked ones."""
    from fmae.ops import scatter_tokens

    x = model.decoder_embed(latent)
    x = scatter_tokens(x, visible, mask.shape[1])
    x = torch.where(mask.unsqueeze(-1), model.mask_token.to(x.dtype), x) + model.decoder_pos_embed.to(x.dtype)
    for block in model.decoder_blocks:
        x = block(x)
    x = gather_tokens(x, masked)
    return model.decoder_pred(model.decoder_norm(x))


def _decoder_by_hand(model, latent, visible, targets):
    """The decoder on the visible tokens and the targets, in plain torch (targets first: the order is free)."""
    x = model.decoder_embed(latent) + model.decoder_pos_embed[visible]
    masked = model.mask_token + model.decoder_pos_embed[targets]
    x = torch.cat([masked, x], dim=1)
    for block in model.decoder_blocks:
        x = block(x)
    return model.decoder_pred(model.decoder_norm(x[:, : targets.shape[1]]))


def test_keep_one_equals_the_full_decoder_of_before():
    model = _model()
    clip, mask, k = _batch(model, B=3, ratio=0.75, seed=8)
    out = model(clip, mask, k)
    visible, masked = visible_index(mask, k)
    cubes = patchify(clip, model.config.tubelet)
    latent = model.forward_encoder(cubes, visible)
    before = _decoder_before_decoder_input(model, latent, visible, mask, masked)
    torch.testing.assert_close(out.pred, before, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.masked_index, masked)
    # Gradients too: every parameter, the mask token included.
    ((out.pred - out.target) ** 2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ((before - out.target) ** 2).mean().backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-3, atol=1e-6, msg=n)
    assert grads["mask_token"].abs().sum() > 0


@pytest.mark.parametrize("keep", [0.25, 0.5])
@pytest.mark.parametrize("strategy", ["running_cell", "random"])
def test_decoder_keep_predicts_exactly_the_chosen_positions(keep, strategy):
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", img_size=64, num_frames=4)  # a 2 x 4 x 4 grid
    c = model.config
    clip, mask, m = _batch(model, B=2, ratio=0.75, seed=3)
    targets = decoder_targets(mask, keep, strategy, c.grid, generator=torch.Generator().manual_seed(1), num_masked=m)
    k = num_decoder_targets(m, keep)
    out = model(clip, mask, m, targets)
    assert out.pred.shape == out.target.shape == (2, k, c.cube_dim)
    assert torch.equal(out.masked_index, targets)
    assert torch.equal(out.target, gather_tokens(patchify(clip, c.tubelet), targets))
    visible = visible_index(mask, m)[0]
    latent = model.forward_encoder(patchify(clip, c.tubelet), visible)
    torch.testing.assert_close(out.pred, _decoder_by_hand(model, latent, visible, targets), rtol=1e-4, atol=1e-5)
    # The gradient reaches the mask token, the decoder and the encoder.
    ((out.pred - out.target) ** 2).mean().backward()
    assert model.mask_token.grad.abs().sum() > 0
    assert model.decoder_blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.patch_embed.weight.grad.abs().sum() > 0
    # reconstruct() replaces only those cubes.
    rec = patchify(model.reconstruct(clip, mask, m, targets), c.tubelet)
    replaced = torch.zeros_like(mask).scatter_(1, targets, True)
    cubes = patchify(clip, c.tubelet)
    assert torch.equal(rec[~replaced], cubes[~replaced])
    assert not torch.equal(rec[replaced], cubes[replaced])


def test_decoder_keep_with_reference_ops_and_bf16():
    fast = _model()
    ref = FMAE(get_config("fmae_vit_tiny", **SMALL, backend="reference", attention_backend="reference"))
    ref.load_state_dict(fast.state_dict())
    clip, mask, m = _batch(fast, B=2, ratio=0.5, seed=5)
    targets = decoder_targets(
        mask, 0.5, "random", fast.config.grid, generator=torch.Generator().manual_seed(0), num_masked=m
    )
    torch.testing.assert_close(
        fast(clip, mask, m, targets).pred, ref(clip, mask, m, targets).pred, rtol=1e-4, atol=1e-5
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(clip, mask, m, targets)
    assert out.pred.dtype == torch.bfloat16 and out.pred.shape == (2, 2, fast.config.cube_dim)
    ((out.pred.float() - out.target) ** 2).mean().backward()
    assert fast.mask_token.grad is not None and torch.isfinite(fast.mask_token.grad).all()


def test_bad_targets_raise():
    model = _model()
    clip, mask, m = _batch(model)
    visible, masked = visible_index(mask, m)
    with pytest.raises(ValueError, match="masked tokens"):
        model(clip, mask, m, visible[:, :1])
    with pytest.raises(ValueError, match="distinct"):
        model(clip, mask, m, masked[:, :1].expand(-1, 2).contiguous())
    with pytest.raises(ValueError, match="targets must be int64"):
        model(clip, mask, m, masked.int())
    with pytest.raises(ValueError, match="targets must be int64"):
        model(clip, mask, m, torch.cat([masked, masked], dim=1))
    with pytest.raises(ValueError, match="lie in"):
        model(clip, mask, m, masked + 100)
