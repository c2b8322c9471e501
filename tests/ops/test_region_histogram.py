import pytest
import torch
from conftest import backend_params

from fmae.face import FaceRegion
from fmae.ops import region_histogram, region_histogram_reference, token_labels

SHAPES = [  # (B, T, H, W), tubelet, K
    ((1, 2, 16, 16), (2, 16, 16), 7),
    ((2, 4, 48, 32), (2, 16, 16), 7),
    ((3, 6, 32, 80), (2, 16, 16), 7),
    ((2, 3, 20, 15), (3, 4, 5), 7),
    ((1, 4, 24, 40), (1, 8, 8), 19),
    ((2, 2, 16, 16), (2, 16, 16), 1),
]


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("shape,tubelet,K", SHAPES)
def test_matches_reference(device, backend, shape, tubelet, K):
    g = torch.Generator().manual_seed(hash((shape, tubelet, K)) % 2**31)
    maps = torch.randint(0, K, shape, generator=g, dtype=torch.uint8).to(device)
    want = region_histogram_reference(maps, tubelet, K)
    got = region_histogram(maps, tubelet, K, backend=backend)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones_like(got[..., 0]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("device,backend", backend_params())
def test_token_order_is_videomae(device, backend):
    # One marked pixel per token tells which token each region of the map lands in.
    T, H, W = 4, 48, 64
    maps = torch.zeros((1, T, H, W), dtype=torch.uint8)
    ti, hi, wi = 1, 2, 3
    maps[0, ti * 2 + 1, hi * 16 + 5, wi * 16 + 7] = 1
    hist = region_histogram(maps.to(device), backend=backend, num_classes=2).cpu()
    Hp, Wp = H // 16, W // 16
    n = (ti * Hp + hi) * Wp + wi
    assert torch.nonzero(hist[0, :, 1]).flatten().tolist() == [n]
    assert hist[0, n, 1].item() == pytest.approx(1 / (2 * 16 * 16))


@pytest.mark.parametrize("device,backend", backend_params() + [pytest.param("cpu", "reference", id="cpu-reference")])
def test_bad_input_raises(device, backend):
    maps = torch.zeros((1, 2, 16, 16), dtype=torch.uint8, device=device)
    with pytest.raises(TypeError, match="uint8"):
        region_histogram(maps.float(), backend=backend)
    with pytest.raises(ValueError, match="divide"):
        region_histogram(torch.zeros((1, 3, 16, 16), dtype=torch.uint8, device=device), backend=backend)
    with pytest.raises(ValueError, match=r"\[B, T, H, W\]"):
        region_histogram(torch.zeros((16, 16), dtype=torch.uint8, device=device), backend=backend)
    bad = maps.clone()
    bad[0, 1, 3, 4] = 7
    with pytest.raises(ValueError, match="num_classes"):
        region_histogram(bad, num_classes=7, backend=backend)


def test_unbatched_map():
    maps = torch.randint(0, 7, (4, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(region_histogram(maps), region_histogram(maps[None])[0])


def test_unknown_backend_is_a_clear_error():
    maps = torch.zeros((1, 2, 16, 16), dtype=torch.uint8)
    with pytest.raises(ValueError, match="backend"):
        region_histogram(maps, backend="magic")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        region_histogram(maps, backend="cuda")


def test_token_labels_small_regions_win_over_skin():
    K = len(FaceRegion)
    hist = torch.zeros(1, 4, K)
    hist[0, 0, [FaceRegion.LEFT_EYE, FaceRegion.SKIN]] = torch.tensor([0.12, 0.88])  # a bit of eye in skin
    hist[0, 1, [FaceRegion.MOUTH, FaceRegion.SKIN, FaceRegion.BACKGROUND]] = torch.tensor([0.05, 0.55, 0.40])
    hist[0, 2, FaceRegion.BACKGROUND] = 1.0
    hist[0, 3, [FaceRegion.NOSE, FaceRegion.HAIR]] = torch.tensor([0.3, 0.7])
    labels = token_labels(hist)
    assert labels.tolist() == [[FaceRegion.LEFT_EYE, FaceRegion.SKIN, FaceRegion.BACKGROUND, FaceRegion.NOSE]]
    # Below the threshold everywhere, the largest region wins.
    flat = torch.full((1, 1, K), 1.0 / K)
    flat[0, 0, FaceRegion.SKIN] += 0.01
    assert token_labels(flat, min_coverage=0.5).tolist() == [[FaceRegion.SKIN]]
    with pytest.raises(ValueError):
        token_labels(hist, min_coverage=0.0)


def test_token_labels_on_a_drawn_face():
    # A 2x16x16 token that holds a 4x4 eye in skin is labelled as the eye.
    maps = torch.full((1, 2, 32, 32), FaceRegion.SKIN, dtype=torch.uint8)
    maps[0, :, 4:8, 20:24] = FaceRegion.LEFT_EYE
    labels = token_labels(region_histogram(maps), min_coverage=0.05)
    assert labels.tolist() == [[FaceRegion.SKIN, FaceRegion.LEFT_EYE, FaceRegion.SKIN, FaceRegion.SKIN]]
