"""Check 2, ``attention``: ``fmae.ops.attention``'s ``triton``, ``sdpa``, ``xformers`` and
``reference`` backends at ViT-B's shapes (``[B, heads, N, 64]``:
:data:`fmae.benchmarking.shapes.VIT_B_ATTENTION`, the encoder's 12 heads over 157 tokens
(ratio 0.9) and 784 (ratio 0.5), the decoder's 6 heads over 1568), in bf16 and fp16,
forward and forward + backward: the largest error against the float32 reference computed
from the same inputs, and the time per call (:func:`fmae.benchmarking.timing.time_calls`:
CUDA events, after warm-up). xformers is skipped, with the reason, where it does not import."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from fmae.benchmarking.gpu.config import GpuCheckConfig
from fmae.benchmarking.gpu.runner import Context, error_line, free_memory, require_cuda
from fmae.benchmarking.shapes import VIT_B_ATTENTION
from fmae.benchmarking.timing import time_calls

ATTENTION_BACKENDS: tuple[str, ...] = ("reference", "sdpa", "triton", "xformers")
ATTENTION_MODES: tuple[str, ...] = ("fwd", "fwd+bwd")
ATTENTION_TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-3}
"""Largest error allowed, relative to the reference's largest magnitude (about 8 ulps of bf16 or fp16)."""


def attention_shapes(batch_sizes: Sequence[int]) -> list[tuple[str, int, int, int, int]]:
    """``(name, B, heads, N, head_dim)`` of ViT-B's attention: the encoder at ratios 0.9 and 0.5, the decoder."""
    return [(s.name, b, s.heads, s.tokens, s.head_dim) for b in batch_sizes for s in VIT_B_ATTENTION]


def attention_backends(device: Any) -> tuple[list[str], dict[str, str]]:
    """The backends that can run on ``device`` and, for the others, why not."""
    import torch

    from fmae.ops import _backend

    attention_module = importlib.import_module("fmae.ops.attention")  # the module; fmae.ops.attention is the function
    device = torch.device(device)
    usable, skipped = ["reference", "sdpa"], {}
    try:
        _backend.choose("triton", device, supported=("triton",))
        usable.append("triton")
    except RuntimeError as err:
        skipped["triton"] = str(err)
    if not attention_module._XFORMERS:
        skipped["xformers"] = "xformers is not installed"
    elif device.type != "cuda":
        skipped["xformers"] = "xformers runs on CUDA tensors only"
    else:
        try:
            importlib.import_module("xformers.ops")
            usable.append("xformers")
        except Exception as err:  # noqa: BLE001 - a broken build raises anything
            skipped["xformers"] = f"xformers does not import: {error_line(err)}"
    return usable, skipped


class _Inputs:
    """One shape and dtype's inputs and the float32 reference computed from them: its output,
    its gradients, and the largest magnitude of each (the scale of the relative error)."""

    def __init__(self, b: int, heads: int, n: int, d: int, dtype: Any, device: Any) -> None:
        import torch

        from fmae.ops import attention_reference

        g = torch.Generator().manual_seed(b * 100003 + n)
        self.q, self.k, self.v, self.dout = (
            torch.randn(b, heads, n, d, generator=g).to(device, dtype) for _ in range(4)
        )
        leaves = [t.detach().float().requires_grad_() for t in (self.q, self.k, self.v)]
        ref = attention_reference(*leaves)
        self.ref_grads = torch.autograd.grad(ref, leaves, self.dout.float())
        self.ref = ref.detach()
        self.scale = {"out": float(self.ref.abs().max())}
        self.scale.update({f"d{x}": float(t.abs().max()) for x, t in zip("qkv", self.ref_grads)})


def _call(backend: str, q: Any, k: Any, v: Any) -> Any:
    from fmae.ops import attention, attention_reference

    if backend == "reference":
        return attention_reference(q, k, v)
    return attention(q, k, v, backend=backend)


def _maxdiff(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).abs().max())


def _errors_and_call(backend: str, mode: str, x: _Inputs) -> tuple[dict[str, float], Callable[[], Any]]:
    """The largest errors of one ``backend`` in ``mode`` against the reference, and the call to time."""
    import torch

    if mode == "fwd":
        with torch.no_grad():
            errors = {"out": _maxdiff(_call(backend, x.q, x.k, x.v), x.ref)}

        def forward() -> Any:
            with torch.no_grad():
                return _call(backend, x.q, x.k, x.v)

        return errors, forward
    ql, kl, vl = (t.detach().requires_grad_() for t in (x.q, x.k, x.v))
    out = _call(backend, ql, kl, vl)
    grads = torch.autograd.grad(out, (ql, kl, vl), x.dout)
    errors = {"out": _maxdiff(out.detach(), x.ref)}
    errors.update({f"d{n}": _maxdiff(gr, rg) for n, gr, rg in zip("qkv", grads, x.ref_grads)})

    def forward_backward() -> Any:
        return torch.autograd.grad(_call(backend, ql, kl, vl), (ql, kl, vl), x.dout)

    return errors, forward_backward


def _measure_case(row: dict, x: _Inputs, device: Any, warmup: int, iters: int) -> None:
    """Error and time of ``row``'s backend and mode into ``row``; over the tolerance: failed."""
    errors, fn = _errors_and_call(row["backend"], row["mode"], x)
    timing = time_calls(fn, device, warmup, iters)
    rel = max(errors[key] / max(x.scale[key], 1e-12) for key in errors)
    row.update(
        status="ok",
        ms=round(timing["ms"], 4),
        ms_min=round(timing["ms_min"], 4),
        calls=timing["calls"],
        max_err={k: float(f"{e:.4g}") for k, e in errors.items()},
        rel_err=float(f"{rel:.4g}"),
    )
    tol = ATTENTION_TOLERANCE.get(row["dtype"], 1e-3)
    if not math.isfinite(rel) or rel > tol:
        row["status"] = "failed"
        row["error"] = f"relative error {rel:.3g} over the tolerance {tol:g}"


def _measure_block(
    ctx: Context, rows: list[dict], base: dict, dtype: Any, usable: Sequence[str], modes: Sequence[str], timing: tuple
) -> None:
    """Every backend × mode of one shape and dtype: one row each into ``rows``, saved as it goes."""
    device, warmup, iters = timing
    label = f"{base['shape']} B={base['B']} {base['dtype']}"
    try:
        x = _Inputs(base["B"], base["heads"], base["N"], base["head_dim"], dtype, device)
    except Exception as err:  # noqa: BLE001
        ctx.failures.append(f"inputs for {label}: {error_line(err)}")
        rows.append({**base, "status": "failed", "error": error_line(err)})
        free_memory()
        return
    for backend in usable:
        for mode in modes:
            row = {**base, "backend": backend, "mode": mode}
            if ctx.left() < 3.0:
                rows.append({**row, "status": "skipped", "reason": "out of time"})
                continue
            try:
                _measure_case(row, x, device, warmup, iters)
            except Exception as err:  # noqa: BLE001
                row.update(status="failed", error=error_line(err))
                free_memory()
            if row["status"] == "failed":
                ctx.failures.append(f"{backend} {mode} {label}: {row['error']}")
            rows.append(row)
            ctx.save()


def measure_attention(
    ctx: Context,
    device: Any,
    shapes: Sequence[tuple[str, int, int, int, int]],
    dtypes: Sequence[Any],
    backends: Sequence[str] = ATTENTION_BACKENDS,
    modes: Sequence[str] = ATTENTION_MODES,
    warmup: int = 3,
    iters: int = 20,
) -> None:
    """Error and time of each backend × shape × dtype × mode into ``ctx.details["cases"]``.

    Errors are the largest absolute difference from :func:`fmae.ops.attention_reference`
    in float32 on the same (low-precision) inputs, for the output and, forward+backward,
    for dq, dk, dv; ``rel_err`` is the largest of them over the reference's largest
    magnitude, checked against :data:`ATTENTION_TOLERANCE`.
    """
    import torch

    device = torch.device(device)
    usable, skipped = attention_backends(device)
    usable = [b for b in backends if b in usable]
    ctx.details["backends"] = usable
    ctx.details["backends_skipped"] = {b: why for b, why in skipped.items() if b in backends}
    rows: list[dict] = ctx.details.setdefault("cases", [])
    for name, b, heads, n, d in shapes:
        for dtype in dtypes:
            base = {"shape": name, "B": b, "heads": heads, "N": n, "head_dim": d}
            base["dtype"] = str(dtype).removeprefix("torch.")
            if ctx.left() < 5.0:
                rows += [
                    {**base, "backend": bk, "mode": m, "status": "skipped", "reason": "out of time"}
                    for bk in usable
                    for m in modes
                ]
                continue
            _measure_block(ctx, rows, base, dtype, usable, modes, (device, warmup, iters))
            free_memory()  # the block's tensors are gone: free them before the next
    _attention_speedups(rows)


def _attention_speedups(rows: list[dict]) -> None:
    """``speedup_vs_sdpa`` of each timed row: SDPA's median time over its own, same shape, dtype and mode."""
    sdpa = {
        (r["shape"], r["B"], r["dtype"], r["mode"]): r["ms"] for r in rows if r.get("backend") == "sdpa" and r.get("ms")
    }
    for r in rows:
        key = (r.get("shape"), r.get("B"), r.get("dtype"), r.get("mode"))
        if r.get("ms") and key in sdpa:
            r["speedup_vs_sdpa"] = round(sdpa[key] / r["ms"], 3)


def plan(config: GpuCheckConfig, root: Path | None) -> list[str]:
    """What :func:`check` would run, for the dry run."""
    shapes = ", ".join(f"{n} [{b},{h},{t},{d}]" for n, b, h, t, d in attention_shapes(config.batch_sizes()))
    return [
        f"fmae.ops.attention backends {', '.join(ATTENTION_BACKENDS)} (xformers skipped where it does not "
        "import), bf16 and fp16, forward and forward+backward",
        f"shapes {shapes}",
        "max error against the float32 reference; ms per call (CUDA events, after warm-up)",
    ]


def check(ctx: Context) -> None:
    require_cuda()
    import torch

    shapes = attention_shapes(ctx.config.batch_sizes())
    ctx.details["settings"] = {"warmup": 3, "iters": 20, "timing": "CUDA events, median per call"}
    measure_attention(ctx, "cuda", shapes, (torch.bfloat16, torch.float16))
