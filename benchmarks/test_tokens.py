"""Masked-token ops, forward and backward, at the real sizes.

gather + scatter (B=8, N=1568, C=768, ratio 0.9) against what VideoMAE does today:
boolean-mask indexing to pick the visible tokens and an index_put to place them back;
with a dense upstream gradient and with an expanded one (what ``out.sum().backward()``
sends: one value, stride 0), which the kernels read in place.

decoder_input (B=8, N=1568, C=384: ViT-B's decoder width) against what the model does
today: scatter_tokens onto a zero grid, torch.where with the mask token, the position
table added (cast to the tokens' dtype); and when the decoder keeps only part of the
tokens (keep 0.5, decoder masking), a gather of the kept ones after that.
"""

import pytest
import torch

from fmae.ops import (
    decoder_input,
    decoder_input_reference,
    gather_tokens,
    gather_tokens_reference,
    scatter_tokens,
    scatter_tokens_reference,
    visible_index,
)

B, N, C, RATIO = 8, 1568, 768, 0.9
NUM_MASKED = round(RATIO * N)
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.bfloat16, id="bf16")]


def _setup(dtype, layout):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(B, N, generator=g).argsort(dim=1) < NUM_MASKED
    x = torch.randn(B, N, C, generator=g).to(dtype).requires_grad_()
    if layout == "dense":
        grad = torch.randn(B, N, C, generator=g).to(dtype)
    else:
        grad = torch.ones((), dtype=dtype).expand(B, N, C)
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
    "cpp": _with(
        lambda x, i: gather_tokens(x, i, backend="cpp"), lambda s, i, n: scatter_tokens(s, i, n, backend="cpp")
    ),
}


@pytest.mark.parametrize("layout", ["dense", "expanded"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", list(IMPLS))
def test_gather_scatter_fwd_bwd(benchmark, measure, dtype, impl, layout):
    benchmark.group = f"gather+scatter fwd+bwd B={B} N={N} C={C} r={RATIO} {str(dtype)[6:]} grad {layout}"
    mask, x, grad = _setup(dtype, layout)

    def run():
        x.grad = None
        return IMPLS[impl](mask, x, grad)

    full = measure(run, impl=impl, baseline=impl == "boolean_indexing")
    keep = (~mask).unsqueeze(-1)
    assert torch.equal(full, x.detach() * keep)
    assert torch.equal(x.grad, grad * keep)


DEC_C = 384  # ViT-B's decoder width


def _decoder_setup(dtype, keep):
    """Visible tokens [B, V, C], the mask token, the float32 position table, the mask and
    the decoder's index: the visible positions, then a random `keep` share of the masked."""
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(B, N, generator=g).argsort(dim=1) < NUM_MASKED
    visible, masked = visible_index(mask, NUM_MASKED)
    V, L = N - NUM_MASKED, round(keep * N)
    kept = masked.gather(1, torch.rand(B, NUM_MASKED, generator=g).argsort(dim=1)[:, : L - V])
    index = torch.cat([visible, kept], dim=1)
    tokens = torch.randn(B, V, DEC_C, generator=g).to(dtype).requires_grad_()
    mask_token = (0.02 * torch.randn(1, 1, DEC_C, generator=g)).to(dtype).requires_grad_()
    pos = torch.randn(N, DEC_C, generator=g)
    grad = torch.randn(B, L, DEC_C, generator=g).to(dtype)
    return mask, visible, index, tokens, mask_token, pos, grad


def _model_today(mask, visible, index, tokens, mask_token, pos, keep):
    x = scatter_tokens(tokens, visible, N, backend="cpp")
    x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype), x) + pos.to(x.dtype)
    return x if keep == 1 else gather_tokens(x, index, backend="cpp")


DECODER_IMPLS = {
    "model_today": _model_today,
    "reference": lambda mask, visible, index, tokens, mask_token, pos, keep: decoder_input_reference(
        tokens, index, mask_token, pos
    ),
    "cpp": lambda mask, visible, index, tokens, mask_token, pos, keep: decoder_input(
        tokens, index, mask_token, pos, backend="cpp"
    ),
}


@pytest.mark.parametrize("keep", [1, 0.5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", list(DECODER_IMPLS))
def test_decoder_input_fwd_bwd(benchmark, measure, dtype, impl, keep):
    benchmark.group = f"decoder_input fwd+bwd B={B} N={N} C={DEC_C} r={RATIO} keep={keep} {str(dtype)[6:]}"
    mask, visible, index, tokens, mask_token, pos, grad = _decoder_setup(dtype, keep)
    # At keep 1 the model's output is in grid order, the ops' in the index's: the same
    # gradient, laid out in grid order before the clock starts.
    grid_order = impl == "model_today" and keep == 1
    if grid_order:
        grad = scatter_tokens(grad, index, N)

    def run():
        tokens.grad = mask_token.grad = None
        out = DECODER_IMPLS[impl](mask, visible, index, tokens, mask_token, pos, keep)
        out.backward(grad)
        return out

    out = measure(run, impl=impl, baseline=impl == "model_today")
    want = decoder_input_reference(tokens.detach(), index, mask_token.detach(), pos)
    assert torch.equal(gather_tokens(out, index) if grid_order else out, want)
