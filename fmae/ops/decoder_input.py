"""The decoder input of a masked autoencoder, built in one pass.

A masked autoencoder's decoder sees the encoder's (projected) visible tokens, a learned
mask token at every position it should reconstruct, and the fixed position embedding of
each token's place on the grid. :func:`decoder_input` writes that tensor at once, laid
out like HF's ``VideoMAEForPreTraining``: the visible tokens first, then the mask
tokens. Attention is permutation-equivariant, so the order is the model's choice; and
with decoder masking the decoder may see only some of the masked positions (``L < N``).

Today's model builds the same tensor in three passes over ``[B, N, C]`` (a zero grid
from :func:`fmae.ops.scatter_tokens`, ``torch.where`` with the mask token, the position
table added): this op reads each input once and writes each output element once.
"""

from __future__ import annotations

import torch

from fmae.ops import _backend
from fmae.ops.tokens import FLOAT_DTYPES


def decoder_input_reference(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor
) -> torch.Tensor:
    """``[B, V, C]``, ``int64 [B, L]``, ``[C]`` (or ``[1, 1, C]``), ``[N, C]`` → ``[B, L, C]``.

    ``out[b, l] = (tokens[b, l] if l < V else mask_token) + pos_table.to(tokens.dtype)[index[b, l]]``.
    """
    B, V, C = tokens.shape
    masked = mask_token.reshape(1, 1, C).expand(B, index.shape[1] - V, C)
    return torch.cat([tokens, masked], dim=1) + pos_table.to(tokens.dtype)[index]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _cpp(tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor) -> torch.Tensor:
    B, V, C = tokens.shape
    L = index.shape[1]
    out = tokens.new_empty((B, L, C))
    _backend.cpp_extension().decoder_input(
        tokens.data_ptr(),
        mask_token.data_ptr(),
        pos_table.data_ptr(),
        index.data_ptr(),
        out.data_ptr(),
        B,
        V,
        L,
        pos_table.shape[0],
        C,
        _dtype_name(tokens.dtype),
        _dtype_name(pos_table.dtype),
    )
    return out


def _cuda(tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor) -> torch.Tensor:
    B, V, C = tokens.shape
    L = index.shape[1]
    out = tokens.new_empty((B, L, C))
    stream = torch.cuda.current_stream(tokens.device).cuda_stream
    _backend.cuda_extension().decoder_input(
        tokens.data_ptr(),
        mask_token.data_ptr(),
        pos_table.data_ptr(),
        index.data_ptr(),
        out.data_ptr(),
        B,
        V,
        L,
        pos_table.shape[0],
        C,
        _dtype_name(tokens.dtype),
        _dtype_name(pos_table.dtype),
        stream,
    )
    return out


def _triton(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor
) -> torch.Tensor:
    from fmae.ops.triton.decoder_input import decoder_input_triton

    return decoder_input_triton(tokens, index, mask_token, pos_table)


_IMPLS = {"reference": decoder_input_reference, "cpp": _cpp, "cuda": _cuda, "triton": _triton}


@torch.library.custom_op("fmae::decoder_input", mutates_args=())
def _decoder_input_op(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor, backend: str
) -> torch.Tensor:
    return _IMPLS[backend](tokens, index, mask_token, pos_table)


@_decoder_input_op.register_fake
def _(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor, backend: str
) -> torch.Tensor:
    return tokens.new_empty((tokens.shape[0], index.shape[1], tokens.shape[2]))


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _cpp_sum_rows(grad_masked: torch.Tensor) -> torch.Tensor:
    B, K, C = grad_masked.shape
    out = grad_masked.new_empty((C,), dtype=_accumulator(grad_masked.dtype))
    _backend.cpp_extension().sum_rows(
        grad_masked.data_ptr(), *grad_masked.stride(), out.data_ptr(), B, K, C, _dtype_name(grad_masked.dtype)
    )
    return out


@torch.library.custom_op("fmae::sum_rows", mutates_args=())
def _sum_rows_op(grad_masked: torch.Tensor) -> torch.Tensor:
    """``[B, K, C]`` (any strides) → ``[C]`` sum over B and K, in float32 (float64 for
    float64), by the C++ kernel."""
    return _cpp_sum_rows(grad_masked)


@_sum_rows_op.register_fake
def _(grad_masked: torch.Tensor) -> torch.Tensor:
    return grad_masked.new_empty((grad_masked.shape[2],), dtype=_accumulator(grad_masked.dtype))


def _sum_rows_setup(ctx, inputs, output) -> None:
    (grad_masked,) = inputs
    ctx.shape, ctx.dtype = grad_masked.shape, grad_masked.dtype


def _sum_rows_backward(ctx, grad):
    return grad.to(ctx.dtype).expand(ctx.shape)


_sum_rows_op.register_autograd(_sum_rows_backward, setup_context=_sum_rows_setup)


def _mask_token_grad(grad_masked: torch.Tensor, backend: str) -> torch.Tensor:
    """The mask token's gradient, ``grad[:, V:]`` summed over batch and positions, in
    float32 for bf16/fp16 (float64 for float64), read through the gradient's strides.

    On CPU a kernel of our own (``fmae::sum_rows``): one read of the gradient, in an
    order fixed by the shape alone. Torch's CPU reduction over both outer dimensions of
    a strided slice at once is tens of times slower than a read of it (30-50 ms for
    fp32 at B=8, K=1411, C=384 on 2 cores), and one dimension at a time with a float32
    accumulator it is slower than this kernel on a bf16 gradient. Elsewhere (CUDA,
    Triton, the reference) torch's reduction, one dimension at a time.
    """
    if backend == "cpp":
        return _sum_rows_op(grad_masked)
    return grad_masked.sum(dim=1, dtype=_accumulator(grad_masked.dtype)).sum(dim=0)


def _setup(ctx, inputs, output) -> None:
    tokens, _, mask_token, _, backend = inputs
    ctx.num_visible, ctx.mask_dtype, ctx.backend = tokens.shape[1], mask_token.dtype, backend


def _backward(ctx, grad):
    # Both gradients read `grad` through its strides, so an expanded gradient (stride 0)
    # is never materialised; the tokens' gradient is the slice itself, no copy.
    V = ctx.num_visible
    grad_tokens = grad[:, :V] if ctx.needs_input_grad[0] else None
    grad_mask = _mask_token_grad(grad[:, V:], ctx.backend).to(ctx.mask_dtype) if ctx.needs_input_grad[2] else None
    return grad_tokens, None, grad_mask, None, None


_decoder_input_op.register_autograd(_backward, setup_context=_setup)


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _validate(
    tokens: torch.Tensor, index: torch.Tensor, mask_token: torch.Tensor, pos_table: torch.Tensor, check: bool
) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"tokens must be a [B, V, C] tensor, got {_shape(tokens)}")
    if tokens.dtype not in FLOAT_DTYPES:
        raise TypeError(f"tokens must be float32, bfloat16, float16 or float64, got {tokens.dtype}")
    B, V, C = tokens.shape
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2:
        raise TypeError(
            f"index must be an int64 [B, L] tensor, got {getattr(index, 'dtype', type(index).__name__)} {_shape(index)}"
        )
    if index.shape[0] != B:
        raise ValueError(f"index batch {index.shape[0]} != tokens batch {B}")
    if index.shape[1] < V:
        raise ValueError(f"index has {index.shape[1]} positions per row, fewer than the {V} visible tokens")
    if not isinstance(mask_token, torch.Tensor) or mask_token.shape not in ((C,), (1, 1, C)):
        raise ValueError(f"mask_token must be [C] or [1, 1, C] with C = {C}, got {_shape(mask_token)}")
    if mask_token.dtype != tokens.dtype:
        raise TypeError(f"mask_token must have the tokens' dtype {tokens.dtype}, got {mask_token.dtype}")
    if not isinstance(pos_table, torch.Tensor) or pos_table.dim() != 2 or pos_table.shape[1] != C:
        raise ValueError(f"pos_table must be [N, C] with C = {C}, got {_shape(pos_table)}")
    if pos_table.dtype not in FLOAT_DTYPES:
        raise TypeError(f"pos_table must be float32, bfloat16, float16 or float64, got {pos_table.dtype}")
    if pos_table.requires_grad:
        raise ValueError("pos_table must not require grad: decoder_input treats it as a constant (detach it)")
    for name, t in (("index", index), ("mask_token", mask_token), ("pos_table", pos_table)):
        if t.device != tokens.device:
            raise ValueError(f"{name} is on {t.device}, tokens on {tokens.device}")
    N = pos_table.shape[0]
    # Under torch.compile a value check would be a graph break; compiled callers pass
    # indices from visible_index, which are in range by construction.
    if (check or index.device.type == "cpu") and index.numel() and not torch.compiler.is_compiling():
        lo, hi = torch.aminmax(index)
        if int(lo) < 0 or int(hi) >= N:
            raise IndexError(
                f"index out of range: values must lie in [0, {N}) (rows of pos_table), got [{int(lo)}, {int(hi)}]"
            )


def decoder_input(
    tokens: torch.Tensor,
    index: torch.Tensor,
    mask_token: torch.Tensor,
    pos_table: torch.Tensor,
    backend: str | None = "auto",
    check: bool = True,
) -> torch.Tensor:
    """The decoder's input: visible tokens, then mask tokens, each plus its position embedding.

    ``out[b, l] = (tokens[b, l] if l < V else mask_token) + pos_table[index[b, l]]``,
    written in one pass. Differentiable in ``tokens`` (its gradient is ``grad[:, :V]``)
    and ``mask_token`` (``grad[:, V:]`` summed over batch and positions, accumulated in
    float32 for bf16/fp16); ``index`` and ``pos_table`` are constants.

    dtype rule: ``pos_table`` is cast to the tokens' dtype before the addition (rounded to
    nearest even), then each element is added in the tokens' dtype, exactly as
    ``x + pos_table.to(x.dtype)``; a float32 table beside bf16 tokens is read as it is,
    with no cast copy.

    Args:
        tokens: ``[B, V, C]`` float32, bfloat16, float16 or float64: the visible tokens,
            projected to the decoder's width.
        index: ``int64 [B, L]`` with ``L >= V``, values in ``[0, N)``: the grid positions
            of the visible tokens (first ``V``), then the ``K = L - V`` masked positions
            to reconstruct (as :func:`fmae.ops.visible_index` gives them, possibly a
            subset of the masked ones).
        mask_token: ``[C]`` or ``[1, 1, C]``, the tokens' dtype.
        pos_table: ``[N, C]`` position embeddings, any float dtype, not requiring grad.
        backend: see :mod:`fmae.ops._backend`.
        check: verify the index range on CUDA tensors (one host synchronisation); CPU
            tensors are always checked.

    Returns:
        ``[B, L, C]`` in the tokens' dtype, contiguous.
    """
    _validate(tokens, index, mask_token, pos_table, check)
    name = _backend.choose(backend, tokens.device)
    # The kernels read the table in the tokens' dtype or in float32; any other is cast
    # first, which the dtype rule does anyway.
    if pos_table.dtype not in (tokens.dtype, torch.float32):
        pos_table = pos_table.to(tokens.dtype)
    return _decoder_input_op(
        tokens.contiguous(), index.contiguous(), mask_token.reshape(-1).contiguous(), pos_table.contiguous(), name
    )
