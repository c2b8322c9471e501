"""Masked-token gather + scatter, forward and backward, at the real size (B=8, N=1568,
C=768, ratio 0.9), against what VideoMAE does today: boolean-mask indexing to pick the
visible tokens and an index_put to place them back."""

import pytest
import torch

from fmae.ops import gather_tokens, gather_tokens_reference, scatter_tokens, scatter_tokens_reference, visible_index

B, N, C, RATIO = 8, 1568, 768, 0.9
NUM_MASKED = round(RATIO * N)


def _setup(dtype):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(B, N, generator=g).argsort(dim=1) < NUM_MASKED
    x = torch.randn(B, N, C, generator=g).to(dtype).requires_grad_()
    grad = torch.randn(B, N, C, generator=g).to(dtype)
    return mask, x, grad


def _boolean_indexing(mask, x, grad):
    vis = x[~mask].reshape(B, -1, C)
    full = torch.zeros(B, N, C, dtype=x.dtype).index_put((~mask,), vis.reshape(-1, C))
    full.backward(grad)
    return full


def _with(gather, scatter):
    def run(mask, x, grad):
        index, _ = visible_index(mask, NUM_MASKED)
        full = scatter(gather(x, index), index, N)
        full.backward(grad)
        return full

    return run


IMPLS = {
    "boolean_indexing": _boolean_indexing,
    "torch_gather_scatter": _with(gather_tokens_reference, scatter_tokens_reference),
    "cpp": _with(lambda x, i: gather_tokens(x, i, backend="cpp"), lambda s, i, n: scatter_tokens(s, i, n, backend="cpp")),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_gather_scatter_fwd_bwd(benchmark, measure, dtype, impl):
    benchmark.group = f"gather+scatter fwd+bwd B={B} N={N} C={C} r={RATIO} {str(dtype)[6:]}"
    mask, x, grad = _setup(dtype)

    def run():
        x.grad = None
        return IMPLS[impl](mask, x, grad)

    full = measure(run, impl=impl, baseline=impl == "boolean_indexing")
    assert torch.equal(full, x.detach() * (~mask).unsqueeze(-1))
