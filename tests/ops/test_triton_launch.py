"""Triton paths at the edges of their launch configuration.

The shared op tests cover ordinary shapes; these reach what they do not: tubelets
split over several pixel blocks, class counts split over several class blocks, ids
above 127, token and channel tails of every block, empty inputs, and bit patterns a
float copy could alter. On a machine without a GPU they run in Triton's interpreter.
"""

import pytest
import torch
from conftest import DEVICES

from fmae.ops import (
    _backend,
    gather_tokens,
    gather_tokens_reference,
    region_histogram,
    region_histogram_reference,
    scatter_tokens,
    scatter_tokens_reference,
)

pytestmark = pytest.mark.skipif(not _backend.triton_importable(), reason="triton is not installed")

HIST_CASES = [  # (B, T, H, W), tubelet, K
    ((1, 2, 16, 16), (2, 16, 16), 255),  # 2 pixel blocks x 8 class blocks; ids up to 254
    ((2, 3, 20, 22), (3, 10, 11), 40),  # ragged last pixel block (330 = 256 + 74) and class block
    ((2, 3, 7, 9), (1, 1, 1), 3),  # 378 tokens: a ragged tail of 128-token blocks
    ((1, 2, 4, 4), (2, 4, 4), 2),  # one token, fewer than a block
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,tubelet,K", HIST_CASES)
def test_region_histogram_block_edges(device, shape, tubelet, K):
    g = torch.Generator().manual_seed(sum(shape) + K)
    maps = torch.randint(0, K, shape, generator=g, dtype=torch.uint8).to(device)
    got = region_histogram(maps, tubelet, K, backend="triton")
    torch.testing.assert_close(got, region_histogram_reference(maps, tubelet, K), rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_region_histogram_empty_batch(device):
    maps = torch.zeros((0, 2, 16, 16), dtype=torch.uint8, device=device)
    assert region_histogram(maps, num_classes=7, backend="triton").shape == (0, 1, 7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,N,C,M", [(1, 5, 5000, 3), (2, 300, 1, 299)])  # two column blocks; one channel
def test_gather_scatter_block_edges(device, B, N, C, M):
    g = torch.Generator().manual_seed(B + N + C + M)
    x = torch.randn(B, N, C, generator=g, dtype=torch.float64).to(device)
    index = torch.stack([torch.randperm(N, generator=g)[:M] for _ in range(B)]).to(device)
    assert torch.equal(gather_tokens(x, index, backend="triton"), gather_tokens_reference(x, index))
    src = x[:, :M].contiguous()
    assert torch.equal(scatter_tokens(src, index, N, backend="triton"), scatter_tokens_reference(src, index, N))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype,bits", [(torch.float32, torch.int32), (torch.bfloat16, torch.int16), (torch.float16, torch.int16)], ids=str
)
def test_gather_scatter_copy_bits(device, dtype, bits):
    # NaNs with payloads (signalling ones too), -0.0, infinities and subnormals must come
    # through unchanged. The expected bits come from the reference run on the integer
    # view: torch's own half-precision gather quiets signalling NaNs.
    g = torch.Generator().manual_seed(5)
    B, N, C, M = 2, 9, 21, 4
    raw = torch.randint(torch.iinfo(bits).min, torch.iinfo(bits).max, (B, N, C), generator=g, dtype=bits)
    x = raw.view(dtype).to(device)
    index = torch.stack([torch.randperm(N, generator=g)[:M] for _ in range(B)]).to(device)
    got = gather_tokens(x, index, backend="triton")
    assert torch.equal(got.view(bits), gather_tokens_reference(x.view(bits), index))
    placed = scatter_tokens(got, index, N, backend="triton")
    assert torch.equal(placed.view(bits), scatter_tokens_reference(got.view(bits), index, N))


@pytest.mark.parametrize("device", DEVICES)
def test_gather_scatter_empty(device):
    x = torch.randn(2, 6, 4, device=device)
    none = torch.zeros((2, 0), dtype=torch.int64, device=device)
    assert gather_tokens(x, none, backend="triton").shape == (2, 0, 4)
    assert torch.equal(scatter_tokens(x[:, :0], none, 6, backend="triton"), torch.zeros(2, 6, 4, device=device))
