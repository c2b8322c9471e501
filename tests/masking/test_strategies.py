import pytest
import torch

from fmae.face import FaceRegion
from fmae.masking import (
    DECODER_STRATEGIES,
    STRATEGIES,
    decoder_targets,
    facial_mask,
    frame_mask,
    make_mask,
    num_decoder_targets,
    num_masked,
    random_mask,
    running_cell_order,
    token_grid,
    tube_mask,
)
from fmae.ops import region_histogram, token_labels, visible_index

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TUBELET = (2, 4, 4)  # small cubes keep the maps small; the logic does not depend on the size
GRIDS = [(1, 1, 1), (2, 3, 5), (4, 4, 4), (8, 14, 14)]
RATIOS = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0]


def _blocky_maps(B, grid, g, tubelet=TUBELET):
    """Region maps whose regions are blobs of random sizes, with pixel-level noise so
    that tokens are mixed: uint8 [B, T, H, W]."""
    t, h, w = grid
    coarse = torch.randint(0, 7, (B, t, h, w), generator=g, dtype=torch.uint8)
    maps = coarse.repeat_interleave(tubelet[0], 1).repeat_interleave(tubelet[1], 2).repeat_interleave(tubelet[2], 3)
    noise = torch.rand(maps.shape, generator=g) < 0.05
    return torch.where(noise, torch.randint(0, 7, maps.shape, generator=g, dtype=torch.uint8), maps)


def _mask(strategy, B, grid, ratio, g, device, tubelet=TUBELET):
    maps = _blocky_maps(B, grid, torch.Generator().manual_seed(5), tubelet).to(device) if strategy == "facial" else None
    return make_mask(strategy, ratio, batch=B, grid=grid, region_maps=maps, tubelet=tubelet, generator=g, device=device)


def test_budgets_by_hand():
    # The paper's setting: 8 x 14 x 14 = 1568 tokens at ratio 0.9.
    assert num_masked("facial", (8, 14, 14), 0.9) == 1411  # round(1411.2)
    assert num_masked("random", (8, 14, 14), 0.9) == 1411
    assert num_masked("tube", (8, 14, 14), 0.9) == 8 * 176  # round(176.4) per slice
    assert num_masked("frame", (8, 14, 14), 0.9) == 7 * 196  # round(7.2) slices
    assert num_masked("frame", (8, 14, 14), 0.95) == 8 * 196  # round(7.6)
    assert num_masked("random", (2, 3, 5), 0.5) == 15
    assert token_grid((16, 224, 224), (2, 16, 16)) == (8, 14, 14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_exact_counts(device, strategy, grid):
    g = torch.Generator(device).manual_seed(0)
    N = grid[0] * grid[1] * grid[2]
    for ratio in RATIOS:
        mask = _mask(strategy, 3, grid, ratio, g, device)
        assert mask.dtype == torch.bool and mask.shape == (3, N) and mask.device.type == device
        k = num_masked(strategy, grid, ratio)
        assert mask.sum(dim=1).tolist() == [k] * 3, (strategy, ratio)


@pytest.mark.parametrize("device", DEVICES)
def test_tube_is_the_same_in_every_slice(device):
    grid = (8, 14, 14)
    g = torch.Generator(device).manual_seed(1)
    mask = tube_mask(4, grid, 0.9, g, device).view(4, 8, 196)
    assert torch.equal(mask, mask[:, :1].expand_as(mask))
    assert mask.sum(dim=2).eq(176).all()
    assert not torch.equal(mask[0], mask[1])  # each clip draws its own pattern


@pytest.mark.parametrize("device", DEVICES)
def test_frame_hides_whole_slices(device):
    grid = (8, 3, 5)
    g = torch.Generator(device).manual_seed(2)
    mask = frame_mask(16, grid, 0.5, g, device).view(16, 8, 15)
    per_slice = mask.sum(dim=2)
    assert ((per_slice == 0) | (per_slice == 15)).all()
    assert per_slice.eq(15).sum(dim=1).eq(4).all()
    assert len({tuple(row.tolist()) for row in per_slice}) > 1  # slices chosen at random


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_seeds_reproduce_and_differ(strategy):
    grid = (4, 4, 4)
    first = _mask(strategy, 2, grid, 0.5, torch.Generator().manual_seed(3), "cpu")
    again = _mask(strategy, 2, grid, 0.5, torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(first, again)
    others = [_mask(strategy, 2, grid, 0.5, torch.Generator().manual_seed(s), "cpu") for s in range(4, 10)]
    assert any(not torch.equal(first, o) for o in others)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grid", [(2, 3, 5), (4, 4, 4), (8, 14, 14)], ids=str)
def test_facial_priority(device, grid):
    g = torch.Generator().manual_seed(sum(grid))
    maps = _blocky_maps(4, grid, g).to(device)
    labels = token_labels(region_histogram(maps, TUBELET, backend="reference"))
    gen = torch.Generator(device).manual_seed(0)
    for ratio in RATIOS:
        mask = facial_mask(maps, ratio, TUBELET, gen)
        k = num_masked("facial", grid, ratio)
        for row_mask, row_labels in zip(mask, labels):
            masked, unmasked = row_labels[row_mask], row_labels[~row_mask]
            if len(masked) and len(unmasked):
                # No token of a later region is masked while an earlier one still shows.
                assert masked.max() <= unmasked.min()
                # Whole regions: only the region that crosses the budget is split.
                crossing = masked.max()
                assert (masked < crossing).sum() == (row_labels < crossing).sum()
            assert len(masked) == k


def test_facial_follows_a_moving_eye():
    # 4 time slices of 4 x 4 tokens, skin everywhere but a left eye that moves along
    # the diagonal: token (hi, wi) = (ti, ti) in slice ti.
    T, H, W = 8, 16, 16
    maps = torch.full((1, T, H, W), FaceRegion.SKIN, dtype=torch.uint8)
    maps[..., :4, :] = FaceRegion.BACKGROUND
    for ti in range(4):
        maps[0, 2 * ti : 2 * ti + 2, 4 * ti : 4 * ti + 4, 4 * ti : 4 * ti + 4] = FaceRegion.LEFT_EYE
    mask = facial_mask(maps, 4 / 64, TUBELET, torch.Generator().manual_seed(0)).view(4, 4, 4)
    expected = torch.zeros(4, 4, 4, dtype=torch.bool)
    for ti in range(4):
        expected[ti, ti, ti] = True
    assert torch.equal(mask, expected)
    # A tube mask of the same budget repeats one spatial pattern instead.
    tube = tube_mask(1, (4, 4, 4), 4 / 64, torch.Generator().manual_seed(0)).view(4, 4, 4)
    assert not torch.equal(tube, expected)
    # With 16 tokens, the 12 beyond the eyes are skin, never the background.
    mask = facial_mask(maps, 16 / 64, TUBELET, torch.Generator().manual_seed(0)).view(4, 4, 4)
    background = torch.ones(4, 4, 4, dtype=torch.bool)
    background[:, 1:] = False
    background[0, 0, 0] = False
    assert mask.sum() == 16 and expected.logical_and(mask).sum() == 4 and not mask[background].any()


def test_facial_small_eye_wins_over_skin():
    # An eye of 2 x 2 pixels covers a quarter of a 4 x 4 token: the token is the eye's.
    maps = torch.full((1, 2, 8, 8), FaceRegion.SKIN, dtype=torch.uint8)
    maps[0, :, 5:7, 1:3] = FaceRegion.RIGHT_EYE
    mask = facial_mask(maps, 0.25, TUBELET)
    assert mask.tolist() == [[False, False, True, False]]


def test_facial_draws_at_random_inside_the_crossing_region():
    # 2 eye tokens, 10 nose tokens, 52 skin; masking 7 takes both eyes and 5 noses.
    maps = torch.full((1, 2, 32, 32), FaceRegion.SKIN, dtype=torch.uint8)
    maps[0, :, 0:4, 0:8] = FaceRegion.LEFT_EYE
    maps[0, :, 8:12, 0:32] = FaceRegion.NOSE
    maps[0, :, 12:16, 0:8] = FaceRegion.NOSE
    labels = token_labels(region_histogram(maps, TUBELET))[0]
    assert labels.bincount(minlength=7).tolist() == [2, 0, 10, 0, 0, 52, 0]
    masks = [facial_mask(maps, 7 / 64, TUBELET, torch.Generator().manual_seed(s))[0] for s in range(8)]
    for m in masks:
        assert m[labels == FaceRegion.LEFT_EYE].all() and m[labels == FaceRegion.NOSE].sum() == 5
        assert not m[labels == FaceRegion.SKIN].any()
    assert len({tuple(m.tolist()) for m in masks}) > 1


def test_facial_same_on_every_histogram_backend():
    maps = _blocky_maps(3, (4, 3, 5), torch.Generator().manual_seed(9))
    ref = facial_mask(maps, 0.6, TUBELET, torch.Generator().manual_seed(1), backend="reference")
    fast = facial_mask(maps, 0.6, TUBELET, torch.Generator().manual_seed(1))
    assert torch.equal(ref, fast)


def test_facial_unbatched_map():
    maps = _blocky_maps(1, (2, 2, 2), torch.Generator().manual_seed(2))
    batched = facial_mask(maps, 0.5, TUBELET, torch.Generator().manual_seed(0))
    single = facial_mask(maps[0], 0.5, TUBELET, torch.Generator().manual_seed(0))
    assert single.shape == (8,) and torch.equal(single, batched[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_host_sync_on_cuda(strategy):
    grid = (8, 14, 14)
    maps = _blocky_maps(2, grid, torch.Generator().manual_seed(0), (2, 16, 16)).cuda() if strategy == "facial" else None
    g = torch.Generator("cuda").manual_seed(0)
    make_mask(strategy, 0.9, batch=2, grid=grid, region_maps=maps, tubelet=(2, 16, 16), generator=g, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        make_mask(strategy, 0.9, batch=2, grid=grid, region_maps=maps, tubelet=(2, 16, 16), generator=g, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bad_input_raises():
    grid = (2, 2, 2)
    maps = torch.zeros(1, 4, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="ratio"):
        random_mask(1, grid, 1.5)
    with pytest.raises(TypeError, match="ratio"):
        tube_mask(1, grid, "0.5")
    with pytest.raises(ValueError, match="grid"):
        frame_mask(1, (2, 0, 2), 0.5)
    with pytest.raises(ValueError, match="generator"):
        random_mask(1, grid, 0.5, torch.Generator(), device="meta")
    with pytest.raises(ValueError, match="batch"):
        random_mask(-1, grid, 0.5)
    with pytest.raises(ValueError, match="strategy"):
        num_masked("checkerboard", grid, 0.5)
    with pytest.raises(ValueError, match="strategy"):
        make_mask("checkerboard", 0.5, batch=1, grid=grid)
    with pytest.raises(TypeError, match="uint8"):
        facial_mask(maps.float(), 0.5, TUBELET)
    with pytest.raises(ValueError, match="divide"):
        facial_mask(maps[:, :3], 0.5, TUBELET)
    with pytest.raises(ValueError, match="region_maps"):
        make_mask("facial", 0.5, batch=1, grid=grid, tubelet=TUBELET)
    with pytest.raises(ValueError, match="do not match"):
        make_mask("facial", 0.5, batch=1, grid=(2, 2, 1), region_maps=maps, tubelet=TUBELET)
    with pytest.raises(ValueError, match="divide"):
        token_grid((3, 8, 8), TUBELET)


# Decoder masking: which masked tokens the decoder reconstructs.

KEEPS = [0.25, 0.5, 0.75, 1.0]


def _cell_pattern(grid, keep, phase):
    """VideoMAE V2's RunningCellMaskingGenerator, written out: a 2 x 2 cell queue of
    ``round(4 * (1 - keep))`` ones (dropped by the decoder) then zeros (kept), rotated by
    one place per time slice; bool [N], True = reconstructed."""
    t, h, w = grid
    dropped = round(4 * (1 - keep))
    queue = [1] * dropped + [0] * (4 - dropped)
    rows = []
    for ti in range(t):
        ptr = phase + ti + 1
        cell = [queue[(j + ptr) % 4] for j in range(4)]
        rows.append([[cell[2 * (hi % 2) + wi % 2] == 0 for wi in range(w)] for hi in range(h)])
    return torch.tensor(rows).reshape(-1)


def test_num_decoder_targets():
    assert num_decoder_targets(1411, 1.0) == 1411 and num_decoder_targets(1411, 0.5) == 706  # round(705.5): even
    assert num_decoder_targets(1411, 0.25) == 353 and num_decoder_targets(7, 0.5) == 4
    assert num_decoder_targets(1, 0.25) == 0  # callers refuse it
    for bad in (0.0, 1.5, -0.5):
        with pytest.raises(ValueError, match="keep"):
            num_decoder_targets(10, bad)
    with pytest.raises(TypeError, match="keep"):
        num_decoder_targets(10, "0.5")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("strategy", DECODER_STRATEGIES)
@pytest.mark.parametrize("grid", [(2, 3, 5), (4, 4, 4), (8, 14, 14)], ids=str)
def test_decoder_target_counts(device, strategy, grid):
    g = torch.Generator(device).manual_seed(0)
    maps = _blocky_maps(3, grid, torch.Generator().manual_seed(1)).to(device)
    for enc in ("random", "facial"):
        for ratio in (0.5, 0.9):
            mask = make_mask(
                enc, ratio, batch=3, grid=grid, region_maps=maps, tubelet=TUBELET, generator=g, device=device
            )
            m = num_masked(enc, grid, ratio)
            for keep in KEEPS:
                k = num_decoder_targets(m, keep)
                targets = decoder_targets(mask, keep, strategy, grid, maps, g, m, tubelet=TUBELET)
                assert targets.shape == (3, k) and targets.dtype == torch.int64 and targets.device == mask.device
                assert mask.gather(1, targets).all()  # masked tokens only
                assert (targets.diff(dim=1) > 0).all()  # ascending, distinct
                if keep == 1.0:
                    assert torch.equal(targets, visible_index(mask, m)[1])
    # num_masked read from the mask when not given.
    assert torch.equal(
        decoder_targets(mask, 0.5, strategy, grid, maps, torch.Generator(device).manual_seed(3), tubelet=TUBELET),
        decoder_targets(mask, 0.5, strategy, grid, maps, torch.Generator(device).manual_seed(3), m, tubelet=TUBELET),
    )


def test_keep_one_draws_nothing():
    grid = (4, 4, 4)
    mask = random_mask(2, grid, 0.75, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    for strategy in DECODER_STRATEGIES:
        decoder_targets(mask, 1.0, strategy, grid, generator=g, num_masked=48)
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("strategy", DECODER_STRATEGIES)
def test_decoder_targets_reproduce_and_differ(strategy):
    grid = (4, 6, 6)
    maps = _blocky_maps(2, grid, torch.Generator().manual_seed(1))
    mask = random_mask(2, grid, 0.9, torch.Generator().manual_seed(0))
    m = num_masked("random", grid, 0.9)

    def draw(seed):
        return decoder_targets(mask, 0.5, strategy, grid, maps, torch.Generator().manual_seed(seed), m, tubelet=TUBELET)

    assert torch.equal(draw(0), draw(0))
    assert any(not torch.equal(draw(0), draw(s)) for s in range(1, 5))


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.75])
def test_running_cell_is_videomae_v2s_pattern(keep):
    # Every token masked: the decoder's targets are exactly one of V2's running-cell maps.
    grid = (8, 4, 6)
    mask = torch.ones(4, 8 * 4 * 6, dtype=torch.bool)
    targets = decoder_targets(mask, keep, "running_cell", grid, generator=torch.Generator().manual_seed(0))
    patterns = [_cell_pattern(grid, keep, phase) for phase in range(4)]
    seen = set()
    for row in targets:
        chosen = torch.zeros(mask.shape[1], dtype=torch.bool)
        chosen[row] = True
        matches = [p for p, pattern in enumerate(patterns) if torch.equal(chosen, pattern)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 1  # the phase is drawn per clip
    # Each slice keeps keep·4 places of every 2 x 2 cell, shifted by one place from the slice before.
    order = running_cell_order(grid).view(8, 4, 6)
    assert torch.equal(order[1], (order[0] + 1) % 4) and sorted(order[0, :2, :2].reshape(-1).tolist()) == [0, 1, 2, 3]


def test_running_cell_cuts_the_pattern_to_k():
    # With a random encoder mask, the targets are the masked tokens of the lowest cell orders
    # (one phase per clip), exactly K of them: lower orders whole, the crossing one at random.
    grid = (8, 14, 14)
    g = torch.Generator().manual_seed(0)
    mask = random_mask(6, grid, 0.9, g)
    m = num_masked("random", grid, 0.9)
    order = running_cell_order(grid)
    for keep in (0.25, 0.5):
        targets = decoder_targets(mask, keep, "running_cell", grid, generator=g, num_masked=m)
        for row_mask, row in zip(mask, targets):
            chosen = torch.zeros_like(row_mask)
            chosen[row] = True
            ok = []
            for phase in range(4):
                prio = (order + phase) % 4
                picked, left = prio[chosen], prio[row_mask & ~chosen]
                if picked.max() <= left.min():
                    crossing = picked.max()
                    ok.append(bool((picked < crossing).sum() == (row_mask & (prio < crossing)).sum()))
            assert any(ok)


def test_facial_decoder_targets_take_eyes_nose_mouth_first():
    # One slice of 8 x 8 tokens: 4 eye, 3 nose, 2 mouth tokens, 6 hair, the rest skin, one row background.
    T, H, W = 2, 32, 32
    maps = torch.full((1, T, H, W), FaceRegion.SKIN, dtype=torch.uint8)
    maps[0, :, 28:32, :] = FaceRegion.BACKGROUND
    maps[0, :, 0:4, 0:24] = FaceRegion.HAIR
    maps[0, :, 8:12, 0:8] = FaceRegion.LEFT_EYE
    maps[0, :, 8:12, 16:24] = FaceRegion.RIGHT_EYE
    maps[0, :, 16:20, 8:20] = FaceRegion.NOSE
    maps[0, :, 24:28, 8:16] = FaceRegion.MOUTH
    grid = (1, 8, 8)
    labels = token_labels(region_histogram(maps, TUBELET))[0]
    counts = labels.bincount(minlength=7).tolist()
    assert counts == [2, 2, 3, 2, 6, 41, 8]
    mask = torch.ones(1, 64, dtype=torch.bool)
    parts = labels <= FaceRegion.MOUTH
    for k, want in ((5, "parts"), (9, "parts"), (12, "hair"), (64 - 8 + 3, "background")):
        for seed in range(4):
            row = decoder_targets(
                mask, k / 64, "facial", grid, maps, torch.Generator().manual_seed(seed), tubelet=TUBELET
            )[0]
            got = labels[row]
            assert len(row) == k
            if want == "parts":  # only eye, nose and mouth tokens, drawn among them all
                assert (got <= FaceRegion.MOUTH).all()
            else:
                assert parts[row].sum() == 9  # every facial part first
                assert (got == FaceRegion.HAIR).sum() == min(6, k - 9)
                assert (got == FaceRegion.BACKGROUND).sum() == max(0, k - 9 - 6 - 41)
    # Below the facial parts' count they are drawn at random among all four, not eyes first.
    picks = {
        tuple(
            decoder_targets(mask, 3 / 64, "facial", grid, maps, torch.Generator().manual_seed(s), tubelet=TUBELET)[
                0
            ].tolist()
        )
        for s in range(16)
    }
    assert any(FaceRegion.MOUTH in labels[list(p)].tolist() for p in picks)
    # With an encoder mask, only masked facial parts count.
    enc = facial_mask(maps, 20 / 64, TUBELET, torch.Generator().manual_seed(0))
    row = decoder_targets(enc, 0.5, "facial", grid, maps, torch.Generator().manual_seed(0), 20, tubelet=TUBELET)[0]
    assert enc[0, row].all() and parts[row].sum() == 9 and len(row) == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("strategy", DECODER_STRATEGIES)
def test_decoder_targets_no_host_sync_on_cuda(strategy):
    grid = (8, 14, 14)
    maps = _blocky_maps(2, grid, torch.Generator().manual_seed(0), (2, 16, 16)).cuda()
    g = torch.Generator("cuda").manual_seed(0)
    mask = make_mask("facial", 0.9, batch=2, grid=grid, region_maps=maps, tubelet=(2, 16, 16), generator=g)
    decoder_targets(mask, 0.5, strategy, grid, maps, g, 1411)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        decoder_targets(mask, 0.5, strategy, grid, maps, g, 1411)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_decoder_targets_bad_input_raises():
    grid = (2, 2, 2)
    mask = random_mask(1, grid, 0.5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="keep"):
        decoder_targets(mask, 0.0, "random", grid)
    with pytest.raises(ValueError, match="decoder strategy"):
        decoder_targets(mask, 0.5, "checkerboard", grid)
    with pytest.raises(ValueError, match="grid"):
        decoder_targets(mask, 0.5, "random", (2, 2, 1))
    with pytest.raises(ValueError, match="grid"):
        decoder_targets(mask, 0.5, "random")
    with pytest.raises(TypeError, match="mask"):
        decoder_targets(mask.long(), 0.5, "random", grid)
    with pytest.raises(ValueError, match="region_maps"):
        decoder_targets(mask, 0.5, "facial", grid)
    with pytest.raises(ValueError, match="do not match"):
        decoder_targets(mask, 0.5, "facial", grid, torch.zeros(2, 4, 8, 8, dtype=torch.uint8), tubelet=TUBELET)
    with pytest.raises(ValueError, match="generator"):
        decoder_targets(mask.to("meta"), 0.5, "random", grid, generator=torch.Generator(), num_masked=4)
