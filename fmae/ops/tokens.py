"""Masked-token gather/scatter: the dense visible-token tensor of a masked autoencoder.

``gather_tokens`` picks the visible tokens for the encoder; ``scatter_tokens`` puts the
encoder's tokens back on the full grid for the decoder. Each is the other's gradient.
Indices within a row must be distinct (as :func:`visible_index` produces them); with
repeated indices the result of ``scatter_tokens`` is undefined. Every backend reads its
token input through its strides, so a non-contiguous or expanded upstream gradient
(``out.sum().backward()`` gives one of stride 0) costs no copy.
"""

from __future__ import annotations

import torch

from fmae.ops import _backend

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def gather_tokens_reference(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]``, ``int64 [B, M]`` → ``[B, M, C]`` with ``out[b, m] = x[b, index[b, m]]``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def scatter_tokens_reference(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, M, C]``, ``int64 [B, M]`` → ``[B, n, C]`` zeros with ``out[b, index[b, m]] = src[b, m]``."""
    out = src.new_zeros((src.shape[0], n, src.shape[-1]))
    return out.scatter(1, index.unsqueeze(-1).expand(-1, -1, src.shape[-1]), src)


def _cpp_gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    B, N, C = x.shape
    out = x.new_empty((B, index.shape[1], C))
    _backend.cpp_extension().gather_tokens(
        x.data_ptr(), *x.stride(), index.data_ptr(), out.data_ptr(), B, N, index.shape[1], C, x.element_size()
    )
    return out


def _cpp_scatter(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    B, M, C = src.shape
    out = src.new_empty((B, n, C))
    _backend.cpp_extension().scatter_tokens(
        src.data_ptr(), *src.stride(), index.data_ptr(), out.data_ptr(), B, M, n, C, src.element_size()
    )
    return out


def _cuda_gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    B, N, C = x.shape
    out = x.new_empty((B, index.shape[1], C))
    stream = torch.cuda.current_stream(x.device).cuda_stream
    _backend.cuda_extension().gather_tokens(
        x.data_ptr(), *x.stride(), index.data_ptr(), out.data_ptr(), B, N, index.shape[1], C, x.element_size(), stream
    )
    return out


def _cuda_scatter(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    B, M, C = src.shape
    out = src.new_empty((B, n, C))
    stream = torch.cuda.current_stream(src.device).cuda_stream
    _backend.cuda_extension().scatter_tokens(
        src.data_ptr(), *src.stride(), index.data_ptr(), out.data_ptr(), B, M, n, C, src.element_size(), stream
    )
    return out


def _triton_gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    from fmae.ops.triton.tokens import gather_tokens_triton

    return gather_tokens_triton(x, index)


def _triton_scatter(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    from fmae.ops.triton.tokens import scatter_tokens_triton

    return scatter_tokens_triton(src, index, n)


_GATHER = {"reference": gather_tokens_reference, "cpp": _cpp_gather, "cuda": _cuda_gather, "triton": _triton_gather}
_SCATTER = {
    "reference": scatter_tokens_reference,
    "cpp": _cpp_scatter,
    "cuda": _cuda_scatter,
    "triton": _triton_scatter,
}


@torch.library.custom_op("fmae::gather_tokens", mutates_args=())
def _gather_op(x: torch.Tensor, index: torch.Tensor, backend: str) -> torch.Tensor:
    return _GATHER[backend](x, index)


@_gather_op.register_fake
def _(x: torch.Tensor, index: torch.Tensor, backend: str) -> torch.Tensor:
    return x.new_empty((x.shape[0], index.shape[1], x.shape[2]))


@torch.library.custom_op("fmae::scatter_tokens", mutates_args=())
def _scatter_op(src: torch.Tensor, index: torch.Tensor, n: int, backend: str) -> torch.Tensor:
    return _SCATTER[backend](src, index, n)


@_scatter_op.register_fake
def _(src: torch.Tensor, index: torch.Tensor, n: int, backend: str) -> torch.Tensor:
    return src.new_empty((src.shape[0], n, src.shape[2]))


def _gather_setup(ctx, inputs, output) -> None:
    x, index, backend = inputs
    ctx.save_for_backward(index)
    ctx.n, ctx.backend = x.shape[1], backend


# The backward passes read the upstream gradient through its strides: an expanded one
# (from ``out.sum()``, say) is never materialised.
def _gather_backward(ctx, grad):
    (index,) = ctx.saved_tensors
    return _scatter_op(grad, index, ctx.n, ctx.backend), None, None


def _scatter_setup(ctx, inputs, output) -> None:
    _, index, _, backend = inputs
    ctx.save_for_backward(index)
    ctx.backend = backend


def _scatter_backward(ctx, grad):
    (index,) = ctx.saved_tensors
    return _gather_op(grad, index, ctx.backend), None, None, None


_gather_op.register_autograd(_gather_backward, setup_context=_gather_setup)
_scatter_op.register_autograd(_scatter_backward, setup_context=_scatter_setup)


def _validate(tokens: torch.Tensor, index: torch.Tensor, n: int, what: str, check: bool) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"{what} must be a [B, N, C] tensor, got {getattr(tokens, 'shape', type(tokens).__name__)}")
    if tokens.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{what} must be float32, bfloat16, float16 or float64, got {tokens.dtype}")
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2:
        raise TypeError(
            f"index must be an int64 [B, M] tensor, got {getattr(index, 'dtype', type(index).__name__)} "
            f"{tuple(getattr(index, 'shape', ()))}"
        )
    if index.shape[0] != tokens.shape[0]:
        raise ValueError(f"index batch {index.shape[0]} != {what} batch {tokens.shape[0]}")
    if index.device != tokens.device:
        raise ValueError(f"index is on {index.device}, {what} on {tokens.device}")
    # Under torch.compile a value check would be a graph break; compiled callers pass
    # indices from visible_index, which are in range by construction.
    if (check or index.device.type == "cpu") and index.numel() and not torch.compiler.is_compiling():
        lo, hi = torch.aminmax(index)
        if int(lo) < 0 or int(hi) >= n:
            raise IndexError(f"index out of range: values must lie in [0, {n}), got [{int(lo)}, {int(hi)}]")


def gather_tokens(
    x: torch.Tensor, index: torch.Tensor, backend: str | None = "auto", check: bool = True
) -> torch.Tensor:
    """Pick tokens: ``out[b, m] = x[b, index[b, m]]``; differentiable.

    Args:
        x: ``[B, N, C]`` float32, bfloat16, float16 or float64, any strides (read in place).
        index: ``int64 [B, M]``, values in ``[0, N)``, distinct within a row.
        backend: see :mod:`fmae.ops._backend`.
        check: verify the index range on CUDA tensors (one host synchronisation);
            CPU tensors are always checked.

    Returns:
        ``[B, M, C]`` in ``x``'s dtype, contiguous.
    """
    _validate(x, index, x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 3 else 0, "x", check)
    name = _backend.choose(backend, x.device)
    return _gather_op(x, index.contiguous(), name)


def scatter_tokens(
    src: torch.Tensor, index: torch.Tensor, n: int, backend: str | None = "auto", check: bool = True
) -> torch.Tensor:
    """Place tokens on a zero grid: ``out[b, index[b, m]] = src[b, m]``; differentiable.

    The inverse of :func:`gather_tokens` for distinct indices, and its gradient.

    Args:
        src: ``[B, M, C]`` float32, bfloat16, float16 or float64, any strides (read in place).
        index: ``int64 [B, M]``, values in ``[0, n)``, distinct within a row.
        n: number of tokens of the output grid.

    Returns:
        ``[B, n, C]`` in ``src``'s dtype, contiguous, zero where no token was placed.
    """
    _validate(src, index, int(n), "src", check)
    if isinstance(src, torch.Tensor) and index.shape[1] != src.shape[1]:
        raise ValueError(f"index has {index.shape[1]} tokens per row, src {src.shape[1]}")
    name = _backend.choose(backend, src.device)
    return _scatter_op(src, index.contiguous(), int(n), name)


def visible_index(mask: torch.Tensor, num_masked: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible and masked token indices of a mask, each in ascending (stable) order.

    Args:
        mask: ``bool [B, N]``, True = masked; every row masks the same number of tokens.
        num_masked: that number. Give it (the masking functions know it) to avoid a
            host synchronisation; when ``None`` it is read from the first row.

    Returns:
        ``(visible, masked)``: ``int64 [B, N - num_masked]`` and ``int64 [B, num_masked]``.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        raise TypeError(f"mask must be a bool [B, N] tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    B, N = mask.shape
    if num_masked is None:
        num_masked = int(mask[0].sum()) if B else 0
    if not 0 <= num_masked <= N:
        raise ValueError(f"num_masked must be in [0, {N}], got {num_masked}")
    # The check reads the counts back, which would break a torch.compile graph: eager only.
    checked = mask.device.type == "cpu" and B and not torch.compiler.is_compiling()
    if checked and not bool((mask.sum(dim=1) == num_masked).all()):
        raise ValueError(f"every row of the mask must hide {num_masked} tokens; got counts {mask.sum(dim=1).tolist()}")
    # A stable sort of the 0/1 keys lists visible tokens first, each group in index order.
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return order[:, : N - num_masked], order[:, N - num_masked :]
