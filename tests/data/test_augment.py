import pytest
import torch

from fmae.data.augment import AUGMENTATIONS, augment_clips, augment_generator, parse_augmentations
from fmae.face.regions import FaceRegion
from fmae.pretraining.train import TrainConfig


def _batch(b=5, t=3, h=20, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, h, w, generator=g), torch.randint(0, 7, (b, t, h, w), generator=g, dtype=torch.uint8)


def test_parse_names_the_unknown_kind():
    assert parse_augmentations("crop, FLIP") == ("flip", "crop")
    assert parse_augmentations("none") == parse_augmentations("") == ()
    with pytest.raises(ValueError, match="'blur'"):
        parse_augmentations("flip,blur")
    with pytest.raises(ValueError, match="blur"):
        TrainConfig(augment="blur")


def test_flip_mirrors_pixels_and_swaps_the_eyes():
    clip, regions = _batch()
    out, out_regions = augment_clips(clip, regions, ("flip",), augment_generator(0, 1))
    flipped = [bool(torch.equal(out[i], clip[i].flip(-1))) for i in range(len(clip))]
    kept = [bool(torch.equal(out[i], clip[i])) for i in range(len(clip))]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    for i, f in enumerate(flipped):
        want = regions[i].flip(-1) if f else regions[i]
        if f:
            eyes = {FaceRegion.LEFT_EYE: FaceRegion.RIGHT_EYE, FaceRegion.RIGHT_EYE: FaceRegion.LEFT_EYE}
            want = want.clone().apply_(lambda v: eyes.get(v, v))
        assert torch.equal(out_regions[i], want)


def test_crop_moves_the_region_map_with_the_pixels():
    # Pixels that spell their region id (large blocks): after the crop, the bilinear pixels and the
    # nearest-sampled ids still agree away from block edges.
    b, t, h, w = 6, 2, 48, 64
    blocks = torch.randint(0, 7, (b, t, h // 8, w // 8), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    regions = blocks.repeat_interleave(8, -2).repeat_interleave(8, -1)
    clip = regions.float().unsqueeze(1).expand(b, 3, t, h, w).contiguous()
    out, out_regions = augment_clips(clip, regions, ("crop",), augment_generator(4, 0))
    assert not torch.equal(out, clip)
    agree = (out[:, 0].round() == out_regions.float()).float().mean()
    assert agree > 0.9, agree
    assert set(out_regions.unique().tolist()) <= set(range(7))


def test_colour_keeps_the_regions_and_stays_in_the_pixel_range():
    from fmae.data.clips import IMAGENET_MEAN, IMAGENET_STD

    clip, regions = _batch()
    out, out_regions = augment_clips(clip, regions, ("colour",), augment_generator(0, 2))
    assert torch.equal(out_regions, regions) and out.shape == clip.shape and out.dtype == clip.dtype
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    pixels = out * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_same_seed_and_step_same_draws_and_shards_agree_with_the_whole_batch():
    clip, regions = _batch(b=6, seed=5)
    a = augment_clips(clip, regions, AUGMENTATIONS, augment_generator(2, 9))
    b = augment_clips(clip, regions, AUGMENTATIONS, augment_generator(2, 9))
    c = augment_clips(clip, regions, AUGMENTATIONS, augment_generator(2, 10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    halves = [
        augment_clips(clip[k : k + 3], regions[k : k + 3], AUGMENTATIONS, augment_generator(2, 9), k, 6) for k in (0, 3)
    ]
    assert torch.equal(torch.cat([h[0] for h in halves]), a[0])
    assert torch.equal(torch.cat([h[1] for h in halves]), a[1])


def test_mismatched_shapes_are_refused():
    clip, regions = _batch()
    with pytest.raises(ValueError, match="do not match"):
        augment_clips(clip, regions[:, :2], AUGMENTATIONS, augment_generator(0, 0))
