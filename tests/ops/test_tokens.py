import pytest
import torch
from conftest import COPIES, DEVICES, RecordOps, backend_params

from fmae.ops import gather_tokens, gather_tokens_reference, scatter_tokens, scatter_tokens_reference, visible_index

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SHAPES = [(1, 1, 1, 1), (2, 17, 33, 5), (3, 196, 24, 20), (2, 1568, 40, 157), (1, 64, 768, 63)]  # B, N, C, M


def _index(B, N, M, device, g):
    return torch.stack([torch.randperm(N, generator=g)[:M] for _ in range(B)]).to(device)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,N,C,M", SHAPES)
def test_gather_scatter_match_reference(device, backend, dtype, B, N, C, M):
    g = torch.Generator().manual_seed(B * 1000 + N + C + M)
    x = torch.randn(B, N, C, generator=g).to(device, dtype)
    index = _index(B, N, M, device, g)
    assert torch.equal(gather_tokens(x, index, backend=backend), gather_tokens_reference(x, index))
    src = torch.randn(B, M, C, generator=g).to(device, dtype)
    assert torch.equal(scatter_tokens(src, index, N, backend=backend), scatter_tokens_reference(src, index, N))


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_match_reference(device, backend, dtype):
    g = torch.Generator().manual_seed(7)
    B, N, C, M = 2, 37, 19, 11
    index = _index(B, N, M, device, g)
    x = torch.randn(B, N, C, generator=g).to(device, dtype)
    src = torch.randn(B, M, C, generator=g).to(device, dtype)
    w_out = torch.randn(B, M, C, generator=g).to(device, dtype)
    w_in = torch.randn(B, N, C, generator=g).to(device, dtype)
    grads = []
    for fn_gather, fn_scatter in (
        (lambda a, i: gather_tokens(a, i, backend=backend), lambda a, i, n: scatter_tokens(a, i, n, backend=backend)),
        (gather_tokens_reference, scatter_tokens_reference),
    ):
        xa, sa = x.clone().requires_grad_(), src.clone().requires_grad_()
        ((fn_gather(xa, index) * w_out).sum() + (fn_scatter(sa, index, N) * w_in).sum()).backward()
        grads.append((xa.grad, sa.grad))
    for fast, ref in zip(*grads):
        assert torch.equal(fast, ref)


def _layouts(shape, dtype, device, g):
    """The same kind of tensor in layouts the kernels must read through strides: channels
    strided, tokens strided (a slice), and expanded (stride 0, as a gradient of ``sum``)."""
    B, T, C = shape
    return {
        "channels_strided": torch.randn(B, C, T, generator=g).to(device, dtype).transpose(1, 2),
        "tokens_sliced": torch.randn(B, 2 * T + 1, C, generator=g).to(device, dtype)[:, 1::2],
        "expanded_channels": torch.randn(C, generator=g).to(device, dtype).expand(B, T, C),
        "expanded_scalar": torch.randn((), generator=g).to(device, dtype).expand(B, T, C),
    }


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=str)
def test_strided_inputs_match_reference(device, backend, dtype):
    g = torch.Generator().manual_seed(11)
    B, N, C, M = 3, 29, 13, 10
    index = _index(B, N, M, device, g)
    for name, x in _layouts((B, N, C), dtype, device, g).items():
        assert not x.is_contiguous(), name
        assert torch.equal(gather_tokens(x, index, backend=backend), gather_tokens_reference(x, index)), name
    for name, src in _layouts((B, M, C), dtype, device, g).items():
        got = scatter_tokens(src, index, N, backend=backend)
        assert torch.equal(got, scatter_tokens_reference(src, index, N)), name


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_gradients_match_reference(device, backend, dtype):
    # Upstream gradients of every layout, expanded ones included, give the reference's
    # gradients.
    g = torch.Generator().manual_seed(12)
    B, N, C, M = 2, 31, 9, 12
    index = _index(B, N, M, device, g)
    x = torch.randn(B, N, C, generator=g).to(device, dtype)
    fast = (lambda a: gather_tokens(a, index, backend=backend), lambda a: scatter_tokens(a, index, N, backend=backend))
    ref = (lambda a: gather_tokens_reference(a, index), lambda a: scatter_tokens_reference(a, index, N))
    for name, grad_out in _layouts((B, N, C), dtype, device, g).items():  # the gradient of scatter(gather(x))
        grads = []
        for gather, scatter in (fast, ref):
            xa = x.clone().requires_grad_()
            scatter(gather(xa)).backward(grad_out)
            grads.append(xa.grad)
        assert torch.equal(*grads), name
    for name, grad_out in _layouts((B, M, C), dtype, device, g).items():  # the gradient of gather(scatter(s))
        src = x[:, :M].clone()
        grads = []
        for gather, scatter in (fast, ref):
            sa = src.clone().requires_grad_()
            gather(scatter(sa)).backward(grad_out)
            grads.append(sa.grad)
        assert torch.equal(*grads), name


@pytest.mark.parametrize("device,backend", backend_params())
def test_expanded_gradient_is_not_materialised(device, backend):
    g = torch.Generator().manual_seed(13)
    B, N, C, M = 2, 40, 16, 9
    index = _index(B, N, M, device, g)
    x = torch.randn(B, N, C, generator=g).to(device).requires_grad_()
    loss = scatter_tokens(gather_tokens(x, index, backend=backend), index, N, backend=backend).sum()
    with RecordOps() as record:
        loss.backward()  # sends a [B, N, C] gradient of stride 0
    assert "fmae.gather_tokens.default" in record.ops and "fmae.scatter_tokens.default" in record.ops
    assert not [op for op in record.ops if op.startswith(COPIES)], record.ops
    assert torch.equal(x.grad, scatter_tokens_reference(torch.ones(B, M, C, device=device), index, N))


def test_gradcheck_reference_float64():
    g = torch.Generator().manual_seed(3)
    B, N, C, M = 2, 9, 4, 5
    index = _index(B, N, M, "cpu", g)
    x = torch.randn(B, N, C, dtype=torch.float64, requires_grad=True)
    src = torch.randn(B, M, C, dtype=torch.float64, requires_grad=True)
    for backend in ("reference", "cpp"):
        assert torch.autograd.gradcheck(lambda a: gather_tokens(a, index, backend=backend), (x,))
        assert torch.autograd.gradcheck(lambda a: scatter_tokens(a, index, N, backend=backend), (src,))
        assert torch.autograd.gradgradcheck(lambda a: gather_tokens(a, index, backend=backend), (x,))


@pytest.mark.parametrize("device,backend", backend_params() + [pytest.param("cpu", "reference", id="cpu-reference")])
def test_bad_input_raises(device, backend):
    x = torch.randn(2, 10, 4, device=device)
    index = torch.tensor([[0, 9], [3, 10]], device=device)
    with pytest.raises(IndexError, match="out of range"):
        gather_tokens(x, index, backend=backend)
    with pytest.raises(IndexError, match="out of range"):
        scatter_tokens(torch.randn(2, 2, 4, device=device), index, 10, backend=backend)
    with pytest.raises(IndexError, match="out of range"):
        gather_tokens(x, -index - 1, backend=backend)
    with pytest.raises(TypeError, match="int64"):
        gather_tokens(x, index.int(), backend=backend)
    with pytest.raises(TypeError, match="float"):
        gather_tokens(x.long(), index.clamp(max=9), backend=backend)
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        gather_tokens(x[0], index.clamp(max=9), backend=backend)
    with pytest.raises(ValueError, match="batch"):
        gather_tokens(x[:1], index.clamp(max=9), backend=backend)
    with pytest.raises(ValueError, match="tokens per row"):
        scatter_tokens(torch.randn(2, 3, 4, device=device), index.clamp(max=9), 10, backend=backend)


@pytest.mark.parametrize("device", DEVICES)
def test_visible_index(device):
    g = torch.Generator().manual_seed(0)
    B, N, num_masked = 4, 50, 37
    mask = (torch.rand(B, N, generator=g).argsort(dim=1) < num_masked).to(device)
    for given in (num_masked, None):
        vis, msk = visible_index(mask, given)
        assert vis.shape == (B, N - num_masked) and msk.shape == (B, num_masked)
        assert vis.dtype == msk.dtype == torch.int64
        assert torch.all(vis.diff(dim=1) > 0) and torch.all(msk.diff(dim=1) > 0)  # stable, ascending
        assert not mask.gather(1, vis).any() and mask.gather(1, msk).all()
    x = torch.randn(B, N, 8, device=device)
    back = scatter_tokens(gather_tokens(x, vis), vis, N)
    assert torch.equal(back, x * (~mask).unsqueeze(-1))


def test_visible_index_rejects_uneven_rows():
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :2] = True
    mask[1, :3] = True
    with pytest.raises(ValueError, match="same number|hide"):
        visible_index(mask, 2)
    with pytest.raises(TypeError, match="bool"):
        visible_index(mask.int(), 2)


def test_ops_compile_with_torch_compile():
    def step(x, index, n):
        return scatter_tokens(gather_tokens(x, index) * 2, index, n)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, 8, generator=g, requires_grad=True)
    index = _index(2, 30, 9, "cpu", g)
    compiled = torch.compile(step, fullgraph=True)
    out = compiled(x, index, 30)
    assert torch.equal(out, step(x, index, 30))
    out.sum().backward()
    assert torch.equal(x.grad, 2 * scatter_tokens(torch.ones(2, 9, 8), index, 30))
