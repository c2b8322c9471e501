import pytest
import torch

from fmae.downstream.gradcam import grad_cam, token_relevance, upsample_tokens
from fmae.downstream.head import LinearProbe
from fmae.model import FMAE, get_config


def _tiny(seed=0):
    torch.manual_seed(seed)
    return FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4)).eval()


def _probe(dim, classes, seed=0, norm="none"):
    torch.manual_seed(seed)
    probe = LinearProbe(dim, classes, norm)
    torch.nn.init.normal_(probe.linear.weight)
    return probe.eval()


def _one_token_encoder():
    """Blocks that pass tokens through unchanged, no position embedding and no bias, so a
    token is non-zero after the final norm only where its cube is: on a clip that is zero
    outside one cube, only that token can affect the output."""
    enc = _tiny()
    with torch.no_grad():
        for block in enc.blocks:
            for layer in (block.attn.proj, block.mlp[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        enc.patch_embed.bias.zero_()
        enc.pos_embed.zero_()
    return enc


def test_relevance_is_zero_where_the_score_has_no_gradient():
    tokens = torch.randn(2, 6, 5, requires_grad=True)
    w = torch.randn(5)
    score = tokens[:, 3] @ w  # only token 3 matters
    rel = token_relevance(tokens, score)
    assert rel.shape == (2, 6) and rel.dtype == torch.float32
    assert torch.all(rel[:, [0, 1, 2, 4, 5]] == 0)
    expected = (tokens[:, 3] @ w).clamp_min(0).detach()
    torch.testing.assert_close(rel[:, 3], expected)


def test_the_map_peaks_at_the_only_token_that_can_affect_the_output():
    enc = _one_token_encoder()
    c = enc.config
    t, h, w = c.grid
    k = (1 * h + 0) * w + 1  # time slice 1, row 0, column 1
    clip = torch.zeros(1, 3, 4, 32, 32)
    clip[:, :, 2:4, 0:16, 16:32] = torch.randn(1, 3, 2, 16, 16)
    feats = enc.forward_features(clip, pool=False)[0]
    assert torch.count_nonzero(feats.abs().sum(-1)) == 1  # the construction holds
    probe = LinearProbe(c.embed_dim, 2, "none").eval()
    with torch.no_grad():  # class 1 points along the token, class 0 against it
        probe.linear.weight.copy_(torch.stack([-feats[k], feats[k]]))
    out = grad_cam(enc, probe, clip)
    assert out.target.tolist() == [1]
    assert out.tokens.flatten(1).argmax(1).item() == k
    assert torch.count_nonzero(out.tokens) == 1
    # Frames of other time slices stay cold; the hottest pixel lies in the token's cube.
    assert torch.all(out.heat[0, 0:2] == 0) and out.heat.max() == 1
    tt, y, x = torch.nonzero(out.heat[0] == out.heat[0].max())[0].tolist()
    assert tt in (2, 3) and y < 16 and x >= 16
    # Explaining the other class: ReLU leaves nothing.
    assert torch.all(grad_cam(enc, probe, clip, target=0).heat == 0)


def test_relevance_is_each_tokens_share_of_the_class_score():
    """After the final norm the probe is linear: relevance = ReLU(w_c·z_n / N)."""
    enc, probe = _tiny(), _probe(192, 4, norm="none")
    clip = torch.randn(2, 3, 4, 32, 32)
    out = grad_cam(enc, probe, clip, target=torch.tensor([2, 0]))
    z = enc.forward_features(clip, pool=False).detach()  # [B, N, D]
    w = probe.linear.weight.detach()[[2, 0]]  # [B, D]
    expected = ((z * w[:, None]).sum(-1) / z.shape[1]).clamp_min(0)
    torch.testing.assert_close(out.tokens.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.logits, probe(enc.forward_features(clip)).detach())


def test_shapes_dtypes_and_range_with_a_frozen_encoder():
    enc, probe = _tiny(), _probe(192, 3, norm="batchnorm")
    enc.requires_grad_(False)
    out = grad_cam(enc, probe, torch.randn(3, 3, 4, 32, 32))
    assert out.heat.shape == (3, 4, 32, 32) and out.heat.dtype == torch.float32
    assert out.tokens.shape == (3, 2, 2, 2) and out.logits.shape == (3, 3) and out.target.dtype == torch.int64
    assert torch.equal(out.target, out.logits.argmax(1))
    assert out.heat.min() >= 0 and torch.allclose(out.heat.flatten(1).amax(1), torch.ones(3))
    assert all(p.grad is None for p in enc.parameters())


def test_vanishing_gradient_gives_zeros_not_nan():
    enc, probe = _tiny(), _probe(192, 2)
    with torch.no_grad():
        probe.linear.weight.zero_()
    out = grad_cam(enc, probe, torch.randn(1, 3, 4, 32, 32))
    assert torch.all(out.heat == 0) and not torch.isnan(out.heat).any()


def test_upsampling_keeps_time_slices_apart():
    tokens = torch.zeros(1, 2, 2, 2)
    tokens[0, 1, 1, 0] = 1.0
    up = upsample_tokens(tokens, (2, 16, 16))
    assert up.shape == (1, 4, 32, 32)
    assert torch.all(up[0, :2] == 0) and torch.equal(up[0, 2], up[0, 3])
    assert up[0, 2, 24, 8] > up[0, 2, 8, 24]  # bottom-left is hotter than top-right


def test_bad_target_is_refused():
    enc, probe = _tiny(), _probe(192, 2)
    with pytest.raises(ValueError, match="outside"):
        grad_cam(enc, probe, torch.randn(1, 3, 4, 32, 32), target=5)
    with pytest.raises(ValueError):
        token_relevance(torch.randn(2, 3, requires_grad=True), torch.randn(2))
