"""The decoder's hint (``decoder_hint``): the temporal interpolation and the nearest visible
cube against loops over positions, and the model's use of them (input embedding, residual
prediction, the nearest cube's gate)."""

import math

import pytest
import torch

from fmae.evaluation.baselines import baseline_predictions
from fmae.masking import decoder_targets, num_masked, random_mask
from fmae.model import FMAEConfig, create, normalize_cubes, patchify, temporal_interp
from fmae.model.hint import nearest_visible_index
from fmae.ops import gather_tokens
from fmae.weights import load_model, save_model

SMALL = dict(img_size=32, num_frames=8)  # a 4 x 2 x 2 token grid


def _loop_interp(cubes, visible, grid):
    """The interpolation one position at a time, as a person would do it by hand."""
    B, N, P = cubes.shape
    t, h, w = grid
    out, found = torch.zeros_like(cubes), torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        for n in range(N):
            ti, s = divmod(n, h * w)
            seen = [u for u in range(t) if visible[b, u * h * w + s]]
            before = [u for u in seen if u <= ti]
            after = [u for u in seen if u >= ti]
            if not seen:
                continue
            found[b, n] = True
            if before and after:
                u, v = before[-1], after[0]
                a, c = cubes[b, u * h * w + s], cubes[b, v * h * w + s]
                out[b, n] = a if u == v else a + (ti - u) / (v - u) * (c - a)
            else:
                out[b, n] = cubes[b, (before[-1] if before else after[0]) * h * w + s]
    return out, found


@pytest.mark.parametrize("grid,ratio", [((5, 3, 2), 0.6), ((1, 2, 3), 0.5), ((7, 1, 1), 0.8), ((4, 2, 2), 0.0)])
def test_interpolation_matches_a_loop_over_positions(grid, ratio):
    g = torch.Generator().manual_seed(sum(grid))
    B, N, P = 3, grid[0] * grid[1] * grid[2], 5
    cubes = torch.randn(B, N, P, generator=g, dtype=torch.float64)
    visible = torch.rand(B, N, generator=g) >= ratio
    visible[0] = False  # a clip with nothing visible: nothing found
    got, found = temporal_interp(cubes, visible, grid)
    want, want_found = _loop_interp(cubes, visible, grid)
    assert torch.equal(found, want_found) and not found[0].any()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(got[visible], cubes[visible])  # a visible cube is its own interpolation
    with pytest.raises(ValueError, match="disagree"):
        temporal_interp(cubes, visible, (grid[0] + 1, grid[1], grid[2]))


def _d2(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


@pytest.mark.parametrize("grid,ratio", [((5, 3, 2), 0.6), ((1, 2, 3), 0.5), ((3, 1, 7), 0.9)])
def test_nearest_visible_matches_a_loop_over_tokens(grid, ratio):
    g = torch.Generator().manual_seed(len(grid) + sum(grid))
    t, h, w = grid
    N = t * h * w
    mask = torch.rand(4, N, generator=g) < ratio
    mask[:, 0] = False  # something visible in every row
    mask[1] = True
    mask[1, N - 1] = False  # one visible token: every token's nearest
    coords = [(n // (h * w), n // w % h, n % w) for n in range(N)]
    want = [
        [min((_d2(coords[n], coords[v]), v) for v in range(N) if not row[v])[1] for n in range(N)]
        for row in mask.tolist()
    ]
    assert nearest_visible_index(mask, grid).tolist() == want
    queries = torch.randint(0, N, (4, 5), generator=g)
    picked = [[row[q] for q in qs] for row, qs in zip(want, queries.tolist())]
    assert nearest_visible_index(mask, grid, queries).tolist() == picked


def test_the_baseline_is_the_hint_with_the_nearest_cube_where_none_was_found():
    g = torch.Generator().manual_seed(3)
    grid = (3, 2, 3)
    cubes = torch.randn(2, 18, 4, generator=g)
    mask = torch.zeros(2, 18, dtype=torch.bool)
    mask[:, [0, 6, 12]] = True  # position 0 hidden at every time: no hint there
    mask[1, 1] = True
    interp, found = temporal_interp(cubes, ~mask, grid)
    baseline = baseline_predictions(cubes, mask, grid)
    assert not found[:, [0, 6, 12]].any() and found[:, 1:6].all()
    torch.testing.assert_close(baseline["temporal_interp"][found], interp[found])
    torch.testing.assert_close(baseline["temporal_interp"][~found], baseline["nearest_visible"][~found])


def _clip_and_mask(model, B=2, seed=0):
    """A clip and a mask of half its tokens: spatial position 0 hidden at every time (no hint
    there), four other tokens of each row at random."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(B, 3, c.num_frames, c.img_size, c.img_size, generator=g)
    t, h, w = c.grid
    mask = torch.zeros(B, t * h * w, dtype=torch.bool)
    mask[:, :: h * w] = True
    for row in mask:
        others = (~row).nonzero().flatten()
        row[others[torch.randperm(len(others), generator=g)[: t * h * w // 2 - t]]] = True
    return clip, mask, g


@pytest.mark.parametrize("hint", ["temporal_interp", "interp_nearest"])
@pytest.mark.parametrize("norm_pix_loss", [False, True])
@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_at_init_the_prediction_is_the_hint(hint, norm_pix_loss, keep):
    """temporal_interp: the interpolation where found, zero elsewhere; interp_nearest: the
    temporal_interp baseline, with the nearest cube weighed by the gate's starting value."""
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", **SMALL, decoder_hint=hint, norm_pix_loss=norm_pix_loss)
    c = model.config
    clip, mask, g = _clip_and_mask(model)
    m = c.num_tokens // 2
    targets = decoder_targets(mask, keep, "running_cell", c.grid, generator=g, num_masked=m)
    out = model(clip, mask, m, targets)  # the head starts at zero
    cubes = patchify(clip, c.tubelet)
    _, found = temporal_interp(cubes, ~mask, c.grid)
    baseline = baseline_predictions(cubes, mask, c.grid)["temporal_interp"]
    if norm_pix_loss:
        baseline = normalize_cubes(baseline, c.in_chans)
    found = found.gather(1, targets).unsqueeze(-1)
    gate = 1 / (1 + math.exp(3)) if hint == "interp_nearest" else 0.0
    want = gather_tokens(baseline, targets) * torch.where(found, 1.0, gate)
    assert found.any() and not found.all()  # both kinds of target
    torch.testing.assert_close(out.pred, want)


@pytest.mark.parametrize("hint", ["temporal_interp", "interp_nearest"])
def test_the_hint_reaches_the_decoder_and_its_weights_learn(hint):
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", **SMALL, decoder_hint=hint)
    clip, mask, _ = _clip_and_mask(model)
    m = model.config.num_tokens // 2
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):  # the head starts at zero, so the layers below it learn from the second step
        optimizer.zero_grad()
        out = model(clip, mask, m)
        (out.pred - out.target).square().mean().backward()
        optimizer.step()
    assert model.hint_embed.weight.grad.abs().sum() > 0
    assert (model.hint_token.grad.abs().sum(-1) > 0).all()  # every kind's token learns
    if hint == "interp_nearest":
        assert model.hint_gate.weight.grad.abs().sum() > 0 and model.nearest_embed.weight.grad.abs().sum() > 0
    # Same latent, another hint: the decoder's own output (the prediction less the hint) moves
    # where a hint was found, since the hint is embedded into its input.
    with torch.no_grad():
        out = model(clip, mask, m)
        visible = (~mask).nonzero()[:, 1].view(2, -1)
        latent = model.forward_encoder(patchify(clip, model.config.tubelet), visible)
        hint = gather_tokens(torch.randn(2, 16, model.config.cube_dim), out.masked_index)
        found = torch.ones(2, m, dtype=torch.bool)
        own = [model.forward_decoder(latent, visible, out.masked_index, (h, found)) - h for h in (hint, 2 * hint)]
    assert not torch.allclose(own[0], own[1])
    with pytest.raises(ValueError, match="give a hint exactly"):
        model.forward_decoder(torch.zeros(2, 16 - m, 192), torch.zeros(2, 16 - m, dtype=torch.long), out.masked_index)


@pytest.mark.parametrize("hint", ["temporal_interp", "interp_nearest"])
def test_a_hinted_model_saves_and_loads_and_the_default_reads_as_before(tmp_path, hint):
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", **SMALL, decoder_hint=hint)
    assert model.config.to_dict()["decoder_hint"] == hint
    assert "decoder_hint" not in create("fmae_vit_tiny", **SMALL).config.to_dict()
    assert {"hint_embed.weight", "hint_embed.bias", "hint_token"} <= set(model.state_dict())
    nearest = {"hint_gate.weight", "nearest_embed.weight"} <= set(model.state_dict())
    assert nearest == (hint == "interp_nearest")
    assert not any(k.startswith(("hint_", "nearest_")) for k in create("fmae_vit_tiny", **SMALL).state_dict())
    with pytest.raises(ValueError, match="decoder_hint must be one of"):
        FMAEConfig(decoder_hint="spatial")
    loaded = load_model(save_model(model, tmp_path / "hinted.safetensors"))
    assert loaded.has_decoder and loaded.model.config.decoder_hint == hint
    restored = loaded.model
    clip, _, _ = _clip_and_mask(model)
    m = num_masked("random", model.config.grid, 0.5)
    mask = random_mask(2, model.config.grid, 0.5, torch.Generator().manual_seed(1))
    model.eval()
    torch.testing.assert_close(restored(clip, mask, m).pred, model(clip, mask, m).pred)


@pytest.mark.parametrize("hint", ["none", "temporal_interp", "interp_nearest"])
def test_the_mean_cube_is_added_where_no_hint_was_found_and_learns_only_there(hint):
    torch.manual_seed(0)
    plain = create("fmae_vit_tiny", **SMALL, decoder_hint=hint)
    model = create("fmae_vit_tiny", **SMALL, decoder_hint=hint, decoder_mean_cube=True)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder_mean_cube"] and not unexpected
    assert "decoder_mean_cube" not in plain.config.to_dict()
    c = model.config
    with torch.no_grad():
        model.decoder_mean_cube.normal_()
    clip, mask, g = _clip_and_mask(model)
    m = c.num_tokens // 2
    targets = decoder_targets(mask, 0.75, "random", c.grid, generator=g, num_masked=m)
    out = model(clip, mask, m, targets)
    if hint == "none":
        found = torch.zeros_like(targets, dtype=torch.bool)
    else:
        found = temporal_interp(patchify(clip, c.tubelet), ~mask, c.grid)[1].gather(1, targets)
        assert found.any() and not found.all()
    want = plain(clip, mask, m, targets).pred + model.decoder_mean_cube[targets] * (~found).unsqueeze(-1)
    torch.testing.assert_close(out.pred, want)
    out.pred.square().sum().backward()
    learns = model.decoder_mean_cube.grad.abs().sum(-1) > 0
    used = torch.zeros(c.num_tokens, dtype=torch.bool)
    used[targets[~found]] = True
    assert torch.equal(learns, used)
