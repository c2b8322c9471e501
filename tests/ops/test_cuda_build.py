"""The CUDA part without a GPU: the kernels compile, and the index math they share
with the C++ CPU path (kernels/*.cuh) holds where only the CUDA kernel's limits reach.

Nothing here runs on a GPU; tests/ops compare the CUDA backend with the reference
where one is present.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from fmae.ops import region_histogram, region_histogram_reference

ROOT = Path(__file__).resolve().parents[2]
KERNELS = sorted((ROOT / "kernels").glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_kernel_sources_found():
    # Guards the parametrization below against silently testing nothing.
    assert {p.name for p in KERNELS} >= {"region_histogram.cu", "tokens.cu", "decoder_input.cu"}


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: no CUDA toolkit to compile the kernels with")
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles(source, tmp_path):
    # Compile only, one architecture (sm_80, the oldest CMake builds for), as CMake
    # does: C++17, csrc/ and kernels/ on the include path.
    cmd = [
        NVCC,
        "-c",
        "-std=c++17",
        "-O3",
        "-arch=sm_80",
        f"-I{ROOT / 'csrc'}",
        f"-I{ROOT / 'kernels'}",
        str(source),
        "-o",
        str(tmp_path / f"{source.stem}.o"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    assert (tmp_path / f"{source.stem}.o").stat().st_size > 0


def test_region_histogram_split_token_rows():
    # With many classes a token row no longer fits one run's counters (4096 per run,
    # so 16 tokens at K=255): the row of 21 tokens is split into runs of 16 and 5. The
    # CUDA kernel's runs are the C++ path's, so this checks the GPU's split too.
    K = 255
    maps = torch.randint(0, K, (2, 2, 6, 42), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    got = region_histogram(maps, (1, 2, 2), K, backend="cpp")
    torch.testing.assert_close(got, region_histogram_reference(maps, (1, 2, 2), K), rtol=0, atol=1e-6)
