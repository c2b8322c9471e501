"""Attention forward + backward at the model's shapes, every backend that runs on the
device against the plain float32 reference (the baseline of each group).

Shapes (B=2), :data:`fmae.benchmarking.shapes.ATTENTION_SHAPES` (the GPU check's too): the
base encoder at 90 % masking (157 visible tokens, 12 heads), the same with a key padding
mask, the base encoder at 50 % (784 tokens), and the decoders over all 1568 tokens (base: 6
heads of 64, tiny: 4 heads of 32). Triton is measured on CUDA only: under the CPU
interpreter its time says nothing about the kernel.
"""

import pytest
import torch

from fmae.benchmarking.shapes import ATTENTION_SHAPES
from fmae.benchmarking.timing import synchronize
from fmae.ops import _backend, attention, attention_reference
from fmae.ops.attention import _XFORMERS

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
B = 2
PADDED = ("encoder-base-r0.9",)
"""The shapes also timed with a key padding mask (``<slug>-padded``)."""
SHAPES = {  # name: (heads, N, head_dim, masked)
    f"{s.slug}{suffix}": (s.heads, s.tokens, s.head_dim, masked)
    for s in ATTENTION_SHAPES
    for suffix, masked in (("", False), ("-padded", True))
    if not masked or s.slug in PADDED
}
IMPLS = ["reference", "sdpa", "sdpa_fp32"]
if DEVICE == "cuda" and _backend.triton_importable():
    IMPLS.append("triton")
if DEVICE == "cuda" and _XFORMERS:
    IMPLS.append("xformers")


def _setup(heads, n, head_dim, masked, dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(B, heads, n, head_dim, generator=g).to(DEVICE, dtype) for _ in range(4))
    mask = None
    if masked:  # a variable-length batch: the second sequence is 80 % as long
        mask = torch.zeros(B, n, dtype=torch.bool)
        mask[1, int(0.8 * n) :] = True
        mask = mask.to(DEVICE)
    return [t.requires_grad_() for t in (q, k, v)], grad, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", IMPLS)
def test_attention_fwd_bwd(benchmark, measure, impl, shape, dtype):
    heads, n, head_dim, masked = SHAPES[shape]
    benchmark.group = f"attention fwd+bwd {shape} B={B} H={heads} N={n} d={head_dim} {str(dtype)[6:]} {DEVICE}"
    (q, k, v), grad, mask = _setup(heads, n, head_dim, masked, dtype)
    if impl == "reference":
        fn = lambda: attention_reference(q, k, v, mask)  # noqa: E731
    else:
        fn = lambda: attention(q, k, v, backend=impl, key_padding_mask=mask)  # noqa: E731

    def run():
        q.grad = k.grad = v.grad = None
        out = fn()
        out.backward(grad)
        synchronize(DEVICE)
        return out

    out = measure(run, impl=impl, baseline=impl == "reference")
    expected = attention_reference(q.detach().double(), k.detach().double(), v.detach().double(), mask)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-3  # sanity only; tests/ops/test_attention.py holds the tight checks
    torch.testing.assert_close(out.detach().double(), expected, atol=tol, rtol=tol)
