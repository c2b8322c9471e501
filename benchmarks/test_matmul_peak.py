"""The machine's matmul FLOP/s, fp32 (each group's baseline) against bf16: square
products and the products a pre-training step is made of (B=2, 16×224², ViT-B at 90 %
masking: 314 visible tokens; the decoders: 3136 tokens).

``extra_info`` holds ``flops_per_s`` (from the fastest round) and, in the JSON,
``fraction_of_peak``: of the best square-product FLOP/s the ``matmul_peak`` fixture
sampled in the run (1024², or 512² for bf16 on a CPU without bf16 hardware) — the
yardstick of the step benchmarks' achieved-FLOP/s fractions. Small products reach less
of it; that is the ceiling of a step made of them.

On a CPU without bf16 hardware (AMX/AVX512-BF16) torch's bf16 fallback kernel is two
orders of magnitude slower than fp32: there the bf16 products other than 512² run only
with ``--full``.
"""

import pytest
import torch

from fmae.benchmarking.timing import synchronize
from fmae.runtime.device import cpu_has_fast_bf16, resolve_device

DEVICE = resolve_device("auto")
SLOW_BF16 = DEVICE.type == "cpu" and not cpu_has_fast_bf16()
SHAPES = {  # name: (m, k, n) of [m, k] @ [k, n]
    "square-2048": (2048, 2048, 2048),
    "square-512": (512, 512, 512),
    "enc-base-qkv-r0.9": (314, 768, 2304),
    "enc-base-fc1-r0.9": (314, 768, 3072),
    "enc-base-fc1-r0": (3136, 768, 3072),
    "embed-base-r0.9": (314, 1536, 768),
    "dec-base-fc1": (3136, 384, 1536),
    "dec-tiny-fc1": (3136, 128, 512),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _cases():
    for dtype in DTYPES:
        for shape in SHAPES:
            heavy = dtype == "bf16" and SLOW_BF16 and shape != "square-512"
            yield pytest.param(dtype, shape, marks=[pytest.mark.full] if heavy else [], id=f"{dtype}-{shape}")


@pytest.mark.parametrize("dtype,shape", list(_cases()))
def test_matmul(benchmark, measure, matmul_peak, dtype, shape):
    dt = DTYPES[dtype]
    m, k, n = SHAPES[shape]
    benchmark.group = f"matmul {shape} [{m}, {k}] @ [{k}, {n}] {DEVICE.type}"
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g).to(DEVICE, dt), torch.randn(k, n, generator=g).to(DEVICE, dt)

    def run():
        out = a @ b
        synchronize(DEVICE)
        return out

    out = measure(run, impl=dtype, baseline=dtype == "fp32", rounds=5)
    torch.testing.assert_close(out[:4, :4].float(), a[:4].float() @ b[:, :4].float(), atol=0.5, rtol=2e-2)
    if not benchmark.disabled:
        flops = 2 * m * k * n
        rate = flops / benchmark.stats.stats.min
        benchmark.extra_info.update(
            product=f"[{m}, {k}] @ [{k}, {n}]",
            flops=flops,
            flops_per_s=round(rate),
            matmul_peak=matmul_peak.sample(dt, DEVICE),
        )
