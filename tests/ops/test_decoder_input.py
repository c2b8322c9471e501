import pytest
import torch
from conftest import COPIES, RecordOps, backend_params

from fmae.ops import _backend, decoder_input, decoder_input_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SHAPES = [  # B, V, K, N, C
    (1, 3, 4, 9, 1),  # one channel, one clip
    (2, 0, 7, 9, 5),  # no visible token
    (3, 6, 0, 10, 33),  # no mask token
    (2, 17, 23, 50, 40),  # L < N: the decoder sees only part of the masked positions
    (2, 5, 4, 11, 5000),  # channels over two Triton column blocks
    (1, 157, 100, 1568, 384),  # ViT-B's decoder width, ratio 0.9, decoder keep ~0.16
]


def _inputs(B, V, K, N, C, dtype, pos_dtype, device, g):
    """Random tokens, mask token and table; the index holds distinct positions per row."""
    index = torch.stack([torch.randperm(N, generator=g)[: V + K] for _ in range(B)]).to(device)
    tokens = torch.randn(B, V, C, generator=g).to(device, dtype)
    mask_token = torch.randn(C, generator=g).to(device, dtype)
    pos_table = torch.randn(N, C, generator=g).to(device, pos_dtype)
    return tokens, index, mask_token, pos_table


def _interpreted_bf16(backend, dtype):
    # Triton's interpreter truncates float32 → bf16 instead of rounding (ENVIRONMENT.md).
    return backend == "triton" and _backend.triton_interpreted() and dtype == torch.bfloat16


def _assert_matches(got, want, backend, tokens, mask_token, pos_table):
    assert got.dtype == want.dtype and got.shape == want.shape and got.is_contiguous()
    if not _interpreted_bf16(backend, got.dtype):
        assert torch.equal(got, want)
        return
    # Two truncations (the table's cast, the sum's) each lose under one bf16 ulp (2^-7
    # relative) of the operands they round.
    x = torch.cat([tokens, mask_token.expand(tokens.shape[0], want.shape[1] - tokens.shape[1], -1)], 1)
    scale = x.float().abs() + pos_table.float().abs().max()
    assert ((got.float() - want.float()).abs() <= 2**-6 * scale).all()


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pos_float32", [False, True], ids=["pos_same", "pos_fp32"])
@pytest.mark.parametrize("B,V,K,N,C", SHAPES)
def test_matches_reference(device, backend, dtype, pos_float32, B, V, K, N, C):
    g = torch.Generator().manual_seed(B * 10_000 + V * 100 + K + N + C)
    pos_dtype = torch.float32 if pos_float32 else dtype
    tokens, index, mask_token, pos_table = _inputs(B, V, K, N, C, dtype, pos_dtype, device, g)
    got = decoder_input(tokens, index, mask_token, pos_table, backend=backend)
    want = decoder_input_reference(tokens, index, mask_token, pos_table)
    _assert_matches(got, want, backend, tokens, mask_token, pos_table)


def test_reference_is_the_definition():
    # The reference itself, element by element, against the formula.
    g = torch.Generator().manual_seed(0)
    B, V, K, N, C = 2, 3, 4, 9, 5
    tokens, index, mask_token, pos_table = _inputs(B, V, K, N, C, torch.bfloat16, torch.float32, "cpu", g)
    out = decoder_input_reference(tokens, index, mask_token, pos_table)
    for b in range(B):
        for pos in range(V + K):
            x = tokens[b, pos] if pos < V else mask_token
            assert torch.equal(out[b, pos], x + pos_table[index[b, pos]].to(torch.bfloat16))


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_rounding_of_the_cast_and_the_sum(device, backend, dtype):
    # float32 table entries of every magnitude the dtype has, and beyond (subnormals,
    # overflow to inf), exact ties between two neighbours of the dtype, infinities and
    # NaNs: the kernels' float → bf16/fp16 rounding (kernels/scalar.cuh, shared by the
    # CPU and the GPU) must be torch's, and so must the sum's.
    if _interpreted_bf16(backend, dtype):
        pytest.skip("Triton's interpreter truncates float32 → bf16 instead of rounding")
    g = torch.Generator().manual_seed(1)
    C = 64
    mags = torch.exp2(torch.empty(40 * C).uniform_(-30, 18, generator=g))
    signs = torch.where(torch.rand(40 * C, generator=g) < 0.5, -1.0, 1.0)
    neighbours = torch.randn(8 * C, generator=g).to(dtype)
    above = torch.nextafter(neighbours.float(), torch.full_like(neighbours.float(), float("inf"))).to(dtype)
    ties = (neighbours.double() + (above.double() - neighbours.double()) / 2).float()  # exact in float32
    specials = torch.tensor(
        [
            float("inf"),
            -float("inf"),
            float("nan"),
            0.0,
            -0.0,
            65504.0,
            65519.0,
            65520.0,
            2.0**-24,
            2.0**-25,
            3 * 2.0**-26,
            2.0**-14 - 2.0**-26,
            1e-40,
            -1e-45,
        ]
        * 4
    )
    values = torch.cat([mags * signs, ties, specials])
    N = values.numel() // C
    pos_table = values[: N * C].reshape(N, C).to(device)
    index = torch.randperm(N, generator=g).reshape(1, N).to(device)
    tokens = torch.randn(1, N // 2, C, generator=g).to(device, dtype)
    for mask_token in (torch.zeros(C, dtype=dtype, device=device), torch.randn(C, generator=g).to(device, dtype)):
        got = decoder_input(tokens, index, mask_token, pos_table, backend=backend)
        want = decoder_input_reference(tokens, index, mask_token, pos_table)
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(0.0), want.nan_to_num(0.0))


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("pos_dtype", [torch.float64, torch.float16], ids=str)
def test_other_table_dtypes_are_cast_first(device, backend, pos_dtype):
    # Neither the tokens' dtype nor float32: cast to the tokens' dtype, then added.
    g = torch.Generator().manual_seed(2)
    tokens, index, mask_token, pos_table = _inputs(2, 4, 5, 12, 7, torch.bfloat16, pos_dtype, device, g)
    got = decoder_input(tokens, index, mask_token, pos_table, backend=backend)
    want = decoder_input_reference(tokens, index, mask_token, pos_table)
    _assert_matches(got, want, backend, tokens, mask_token, pos_table)


def _grads(fn, tokens, index, mask_token, pos_table, grad_out):
    t, m = tokens.clone().requires_grad_(), mask_token.clone().requires_grad_()
    fn(t, index, m, pos_table).backward(grad_out)
    return t.grad, m.grad


def _assert_mask_grad_close(got, want, grad_out, V):
    # Sums in a different order: compare within a few roundings of the sum's magnitude.
    exact = grad_out[:, V:].double().sum(dim=(0, 1)).reshape(got.shape)
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(got.dtype, 2**-7)
    size = grad_out[:, V:].double().abs().sum(dim=(0, 1)).reshape(got.shape) + 1
    for g in (got, want):
        assert ((g.double() - exact).abs() <= tol * size).all()


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V,K,N,C", [s for s in SHAPES if s[4] < 1000])
def test_gradients_match_reference(device, backend, dtype, B, V, K, N, C):
    g = torch.Generator().manual_seed(B + V + K + N + C)
    tokens, index, mask_token, pos_table = _inputs(B, V, K, N, C, dtype, torch.float32, device, g)
    mask_token = mask_token.reshape(1, 1, C)  # the model's parameter shape; its gradient keeps it
    grad_out = torch.randn(B, V + K, C, generator=g).to(device, dtype)
    fast = _grads(lambda *a: decoder_input(*a, backend=backend), tokens, index, mask_token, pos_table, grad_out)
    ref = _grads(decoder_input_reference, tokens, index, mask_token, pos_table, grad_out)
    assert torch.equal(fast[0], ref[0]) and torch.equal(fast[0], grad_out[:, :V])
    _assert_mask_grad_close(fast[1], ref[1], grad_out, V)


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_strided_gradients_match_reference(device, backend, dtype):
    g = torch.Generator().manual_seed(3)
    B, V, K, N, C = 3, 5, 8, 20, 11
    tokens, index, mask_token, pos_table = _inputs(B, V, K, N, C, dtype, torch.float32, device, g)
    L = V + K
    layouts = {
        "channels_strided": torch.randn(B, C, L, generator=g).to(device, dtype).transpose(1, 2),
        "tokens_sliced": torch.randn(B, 2 * L, C, generator=g).to(device, dtype)[:, ::2],
        "expanded_channels": torch.randn(C, generator=g).to(device, dtype).expand(B, L, C),
        "expanded_scalar": torch.ones((), dtype=dtype, device=device).expand(B, L, C),
    }
    for name, grad_out in layouts.items():
        fast = _grads(lambda *a: decoder_input(*a, backend=backend), tokens, index, mask_token, pos_table, grad_out)
        ref = _grads(decoder_input_reference, tokens, index, mask_token, pos_table, grad_out)
        assert torch.equal(fast[0], ref[0]), name
        _assert_mask_grad_close(fast[1], ref[1], grad_out, V)


@pytest.mark.parametrize("device,backend", backend_params())
def test_expanded_gradient_is_not_materialised(device, backend):
    g = torch.Generator().manual_seed(4)
    tokens, index, mask_token, pos_table = _inputs(2, 6, 9, 30, 16, torch.float32, torch.float32, device, g)
    tokens.requires_grad_()
    mask_token.requires_grad_()
    # A non-leaf input, as in the model (the decoder embedding's output): its gradient
    # is not copied into a .grad.
    loss = decoder_input(tokens * 2, index, mask_token, pos_table, backend=backend).sum()
    with RecordOps() as record:
        loss.backward()
    assert not [op for op in record.ops if op.startswith(COPIES)], record.ops
    assert torch.equal(tokens.grad, torch.full_like(tokens, 2.0))
    assert torch.equal(mask_token.grad, torch.full_like(mask_token, 2.0 * 9))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend):
    g = torch.Generator().manual_seed(5)
    tokens, index, mask_token, pos_table = _inputs(2, 3, 4, 9, 5, torch.float64, torch.float64, "cpu", g)
    tokens.requires_grad_()
    mask_token.requires_grad_()
    fn = lambda t, m: decoder_input(t, index, m, pos_table, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (tokens, mask_token))
    assert torch.autograd.gradgradcheck(fn, (tokens, mask_token))


@pytest.mark.parametrize("device,backend", backend_params() + [pytest.param("cpu", "reference", id="cpu-reference")])
def test_bad_input_raises(device, backend):
    g = torch.Generator().manual_seed(6)
    tokens, index, mask_token, pos_table = _inputs(2, 3, 4, 9, 5, torch.float32, torch.float32, device, g)

    def call(tokens=tokens, index=index, mask_token=mask_token, pos_table=pos_table):
        return decoder_input(tokens, index, mask_token, pos_table, backend=backend)

    with pytest.raises(IndexError, match="out of range"):
        call(index=index + 9)
    with pytest.raises(IndexError, match="out of range"):
        call(index=index - 9)
    with pytest.raises(TypeError, match="int64"):
        call(index=index.int())
    with pytest.raises(TypeError, match="int64"):
        call(index=index[0])
    with pytest.raises(TypeError, match="float"):
        call(tokens=tokens.long(), mask_token=mask_token.long())
    with pytest.raises(ValueError, match=r"\[B, V, C\]"):
        call(tokens=tokens[0])
    with pytest.raises(ValueError, match="batch"):
        call(tokens=tokens[:1])
    with pytest.raises(ValueError, match="fewer than"):
        call(index=index[:, :2])
    with pytest.raises(ValueError, match="mask_token"):
        call(mask_token=mask_token[:4])
    with pytest.raises(TypeError, match="mask_token"):
        call(mask_token=mask_token.double())
    with pytest.raises(ValueError, match="pos_table"):
        call(pos_table=pos_table[:, :4])
    with pytest.raises(TypeError, match="pos_table"):
        call(pos_table=pos_table.int())
    with pytest.raises(ValueError, match="require grad"):
        call(pos_table=pos_table.clone().requires_grad_())
    with pytest.raises(ValueError, match="meta"):
        call(pos_table=pos_table.to("meta"))


def test_compiles_with_torch_compile():
    def decoder_in(tokens, index, mask_token, pos_table):
        return decoder_input(tokens * 2, index, mask_token, pos_table) * 3

    g = torch.Generator().manual_seed(7)
    tokens, index, mask_token, pos_table = _inputs(2, 5, 6, 20, 8, torch.float32, torch.float32, "cpu", g)
    tokens.requires_grad_()
    mask_token.requires_grad_()
    compiled = torch.compile(decoder_in, fullgraph=True)
    out = compiled(tokens, index, mask_token, pos_table)
    assert torch.equal(out, decoder_in(tokens, index, mask_token, pos_table))
    out.sum().backward()
    assert torch.equal(tokens.grad, torch.full_like(tokens, 6.0))
    assert torch.equal(mask_token.grad, torch.full_like(mask_token, 3.0 * 2 * 6))
