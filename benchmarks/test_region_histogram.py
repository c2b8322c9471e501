"""region_histogram at the real size (B=8 clips of 16×224×224) against the naive torch
reference (one_hot + avg_pool3d)."""

import pytest
import torch

from fmae.ops import region_histogram, region_histogram_reference


@pytest.fixture(scope="module")
def maps():
    return torch.randint(0, 7, (8, 16, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.benchmark(group="region_histogram B=8 16x224x224")
@pytest.mark.parametrize("impl", ["reference", "cpp"])
def test_region_histogram(measure, maps, impl):
    if impl == "reference":
        fn = lambda: region_histogram_reference(maps, (2, 16, 16), 7)  # noqa: E731
    else:
        fn = lambda: region_histogram(maps, backend=impl)  # noqa: E731
    out = measure(fn, impl=impl, baseline=impl == "reference")
    assert out.shape == (8, 1568, 7)
