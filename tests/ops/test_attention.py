"""fmae.ops.attention: every backend that runs here against the reference, values and
gradients. On a machine without a GPU the Triton kernels run in the interpreter.

Low-precision results follow FlashAttention's rule: the fast path's error against a
float64 reference may be at most twice that of plain torch computed in the same
dtype, plus (in the interpreter, which truncates float32 → bf16 instead of rounding)
one ulp of the largest value.
"""

import math

import pytest
import torch
from conftest import DEVICES

from fmae.ops import _backend, attention, attention_reference
from fmae.ops.attention import _XFORMERS, _choose
from fmae.runtime.device import cpu_has_fast_bf16

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (B, heads, N_q, N_k, head_dim): one token; a tail shorter than a block; the visible
# tokens of 1568 at 90 % masking with a head_dim that is no power of two; N_q != N_k
# both ways over several blocks.
SHAPES = [(1, 1, 1, 1, 32), (2, 1, 17, 17, 64), (1, 2, 157, 157, 48), (1, 1, 200, 97, 128), (1, 1, 37, 200, 64)]


def _backends():
    params = []
    for device in DEVICES:
        for name in ("triton", "xformers", "sdpa", "sdpa_fp32"):
            marks = []
            if name == "xformers" and device != "cuda":
                marks = [pytest.mark.skip(reason="xformers runs on CUDA tensors only")]
            elif name == "xformers" and not _XFORMERS:
                marks = [
                    pytest.mark.skip(reason="xformers is not installed (optional extra; needs a CUDA build of torch)")
                ]
            elif name == "triton" and not _backend.triton_importable():
                marks = [pytest.mark.skip(reason="triton is not installed")]
            params.append(pytest.param(device, name, id=f"{device}-{name}", marks=marks))
    return params


def _inputs(shape, dtype, device, seed):
    B, H, NQ, NK, D = shape
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, D, generator=g) for n in (NQ, NK, NK))
    grad = torch.randn(B, H, NQ, D, generator=g)
    return [t.to(device, dtype) for t in (q, k, v, grad)]


def _value_and_grads(fn, q, k, v, grad, dtype=None):
    """``[out, dq, dk, dv]`` of ``fn`` at (q, k, v), in float64, inputs cast to ``dtype``."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (q, k, v)]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad.to(out.dtype))
    return [t.double() for t in (out, *grads)]


def _assert_accurate(fast, naive, truth, dtype, what):
    """Each of ``fast`` within the error rule of the module docstring."""
    for name, f, n, t in zip(("out", "dq", "dk", "dv"), fast, naive, truth):
        assert torch.isfinite(f).all(), f"{what}: {name} is not finite"
        if dtype == torch.float32:
            torch.testing.assert_close(f, t, atol=2e-5, rtol=2e-5, msg=lambda m: f"{what}: {name}: {m}")
            continue
        err, ref_err = (f - t).abs().max().item(), (n - t).abs().max().item()
        ulp = torch.finfo(dtype).eps * t.abs().max().item() if _backend.triton_interpreted() else 0.0
        assert err <= 2 * ref_err + ulp + 1e-6, (
            f"{what}: {name} error {err:.3g} > 2 × plain torch's {ref_err:.3g} + {ulp:.3g}"
        )


def _check_backend(backend, q, k, v, grad, key_padding_mask=None, what=""):
    dtype = q.dtype
    fast = _value_and_grads(lambda *a: attention(*a, backend=backend, key_padding_mask=key_padding_mask), q, k, v, grad)
    truth = _value_and_grads(lambda *a: attention_reference(*a, key_padding_mask), q, k, v, grad, torch.float64)
    naive = _value_and_grads(lambda *a: attention_reference(*a, key_padding_mask, compute_dtype=dtype), q, k, v, grad)
    _assert_accurate(fast, naive, truth, dtype, what)
    return fast


@pytest.mark.parametrize("device,backend", _backends())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(device, backend, dtype, shape):
    q, k, v, grad = _inputs(shape, dtype, device, seed=sum(shape))
    _check_backend(backend, q, k, v, grad, what=f"{backend} {dtype} {shape}")


@pytest.mark.parametrize("device,backend", _backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_key_padding_mask(device, backend, dtype):
    shape = (3, 2, 37, 157, 64)
    q, k, v, grad = _inputs(shape, dtype, device, seed=11)
    g = torch.Generator().manual_seed(12)
    mask = torch.rand(3, 157, generator=g) < 0.4  # row 0: random padding
    mask[1] = torch.arange(157) >= 100  # row 1: a variable-length sequence of 100 keys
    mask[2] = True  # row 2: no valid key at all
    out, dq, dk, dv = _check_backend(backend, q, k, v, grad, mask.to(device), what=f"{backend} {dtype} masked")
    assert not out[2].any() and not dq[2].any() and not dk[2].any() and not dv[2].any()
    assert not dk[0][:, mask[0]].any() and not dv[1][:, 100:].any(), "padding keys must get no gradient"


@pytest.mark.parametrize("device,backend", _backends())
def test_model_layout_and_broadcast_gradient(device, backend):
    # The model's q, k, v are strided views of one qkv projection, and .sum() gives a
    # gradient whose strides are all 0.
    B, L, H, D = 2, 100, 2, 32
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(B, L, 3 * H * D, generator=g).to(device)
    results = []
    for fn in (lambda *a: attention(*a, backend=backend), attention_reference):
        x = qkv.clone().requires_grad_()
        q, k, v = x.reshape(B, L, 3, H, D).permute(2, 0, 3, 1, 4)
        out = fn(q, k, v)
        out.sum().backward()
        results.append((out, x.grad))
    for fast, ref in zip(*results):
        torch.testing.assert_close(fast, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.skipif(not _backend.triton_importable(), reason="triton is not installed")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 2, 0, 5, 32), (0, 2, 5, 5, 32)], ids=str)
def test_triton_empty(device, shape):
    q, k, v, grad = _inputs(shape, torch.float32, device, seed=0)
    out, dq, dk, dv = _value_and_grads(lambda *a: attention(*a, backend="triton"), q, k, v, grad)
    assert out.shape == q.shape and dq.shape == q.shape and dk.shape == k.shape
    assert not dk.any() and not dv.any()


@pytest.mark.skipif(not _backend.triton_importable(), reason="triton is not installed")
def test_triton_op_registration():
    # Schema, fake (meta) kernel and autograd registration, as torch.compile sees them.
    q, k, v, _ = _inputs((1, 2, 20, 24, 16), torch.float32, "cpu", seed=3)
    mask = torch.zeros(1, 24, dtype=torch.bool)
    mask[0, -5:] = True
    for m in (None, mask):
        torch.library.opcheck(
            torch.ops.fmae.flash_attention.default, (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), m)
        )


def test_reference_gradcheck_float64():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 1, n, 4, generator=g, dtype=torch.float64, requires_grad=True) for n in (3, 5, 5))
    mask = torch.tensor([[False, True, False, False, True], [True] * 5])
    for m in (None, mask):  # the second row of the mask has no valid key
        assert torch.autograd.gradcheck(lambda *a: attention_reference(*a, m), (q, k, v))


def test_auto_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _choose("auto", cpu, False) == "sdpa" and _choose(None, cpu, True) == "sdpa"
    assert _choose("auto", cuda, False) == "sdpa"
    assert _choose("auto", cuda, True) == ("triton" if _backend.triton_importable() else "sdpa")
    half_on_cpu = "sdpa" if cpu_has_fast_bf16() else "sdpa_fp32"
    assert _choose("auto", cpu, False, torch.bfloat16) == half_on_cpu == _choose("auto", cpu, True, torch.float16)
    assert _choose("auto", cuda, False, torch.bfloat16) == "sdpa"


@pytest.mark.parametrize("device", DEVICES)
def test_bad_input_raises(device):
    q = torch.randn(2, 3, 5, 8, device=device)
    kv = torch.randn(2, 3, 7, 8, device=device)
    mask = torch.zeros(2, 7, dtype=torch.bool, device=device)
    with pytest.raises(ValueError, match=r"\[B, heads, N, head_dim\]"):
        attention(q[0], kv, kv)
    with pytest.raises(ValueError, match="expected q"):
        attention(q, kv[:, :2], kv[:, :2])
    with pytest.raises(ValueError, match="expected q"):
        attention(q, kv, kv[..., :4])
    with pytest.raises(TypeError, match="one dtype"):
        attention(q, kv.half(), kv)
    with pytest.raises(TypeError, match="one dtype"):
        attention(q.long(), kv.long(), kv.long())
    with pytest.raises(TypeError, match="bool"):
        attention(q, kv, kv, key_padding_mask=mask.float())
    with pytest.raises(ValueError, match=r"\[B, N_k\]"):
        attention(q, kv, kv, key_padding_mask=mask[:, :5])
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, kv, kv, backend="flash")
    if _backend.triton_importable():
        with pytest.raises(TypeError, match="float64"):
            attention(q.double(), kv.double(), kv.double(), backend="triton")
        wide = torch.randn(1, 1, 2, 264, device=device)
        with pytest.raises(ValueError, match="head_dim"):
            attention(wide, wide, wide, backend="triton")
    if not (_XFORMERS and device == "cuda"):
        with pytest.raises(RuntimeError, match="xformers"):
            attention(q, kv, kv, backend="xformers")


def test_reference_matches_definition():
    # The reference itself, once, against softmax written out with exp.
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(1, 2, n, 6, generator=g, dtype=torch.float64) for n in (4, 3, 3))
    w = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(6))
    torch.testing.assert_close(attention_reference(q, k, v), (w / w.sum(-1, keepdim=True)) @ v)
