"""Grad-CAM over the encoder's tokens: where in a clip a probe's prediction comes from.

Grad-CAM (Selvaraju et al., ICCV 2017; the paper's Fig. 10) weighs a layer's
activations by the gradient of a class score. For a token sequence the weighting is
done per token (HiResCAM's element-wise form of it): the relevance of token ``n`` is
``ReLU(Σ_d ∂y_c/∂A[n, d] · A[n, d])``, its own gradient times its own activation.

The activations ``A`` are the last block's tokens after the encoder's final LayerNorm
(what :meth:`fmae.model.FMAE.forward_features` mean-pools), not before it: a LayerNorm
is invariant to the scale of its input, so the gradient at its input is orthogonal to
the input and gradient × activation there is zero up to rounding. After the norm the
probe is linear in every token (mean pool, an eval-mode BatchNorm, a linear layer), so
the relevance is each token's share of the class score, as in CAM.

The token map ``[T', Hp, Wp]`` is spread back over the frames: each tubelet time slice
covers ``tt`` frames, and space is upsampled bilinearly to ``H × W``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmae.downstream.features import encode_clips
from fmae.model import FMAE


class GradCAM(NamedTuple):
    """What :func:`grad_cam` returns for a batch of ``B`` clips ``[B, C, T, H, W]``."""

    heat: torch.Tensor
    """float32 ``[B, T, H, W]`` in [0, 1]: the token map upsampled to the frames, divided
    by its maximum over the clip (all zeros where no token is relevant)."""
    tokens: torch.Tensor
    """float32 ``[B, T', Hp, Wp]``: the relevance of every token, before scaling."""
    logits: torch.Tensor
    """float32 ``[B, K]``: the probe's output (class logits, or ``K = 1`` score)."""
    target: torch.Tensor
    """int64 ``[B]``: the output explained (the predicted class unless one was given)."""


def token_relevance(tokens: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Per-token Grad-CAM: ``ReLU(Σ_d ∂score/∂tokens · tokens)``.

    Args:
        tokens: float ``[B, N, D]`` activations that ``score`` was computed from (they
            must require grad); clips must not interact (eval-mode normalisation).
        score: float ``[B]``, one scalar per clip.

    Returns:
        float32 ``[B, N]``, non-negative; zeros where the gradient vanishes.
    """
    if tokens.dim() != 3 or score.shape != tokens.shape[:1]:
        raise ValueError(f"tokens must be [B, N, D] and score [B], got {tuple(tokens.shape)} and {tuple(score.shape)}")
    # One backward for the batch: clip b's score depends on clip b's tokens only.
    (grad,) = torch.autograd.grad(score.sum(), tokens, allow_unused=True)
    if grad is None:  # the score does not depend on the tokens at all
        return torch.zeros(tokens.shape[:2], dtype=torch.float32, device=tokens.device)
    return (grad.float() * tokens.detach().float()).sum(-1).clamp_min(0.0)


def upsample_tokens(tokens: torch.Tensor, tubelet: tuple[int, int, int]) -> torch.Tensor:
    """Token maps ``[B, T', Hp, Wp]`` → float32 ``[B, T'·tt, Hp·th, Wp·tw]``: every time
    slice repeated over its ``tt`` frames, space upsampled bilinearly."""
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be [B, T', Hp, Wp], got {tuple(tokens.shape)}")
    B, t, h, w = tokens.shape
    tt, th, tw = tubelet
    frames = F.interpolate(
        tokens.float().reshape(B * t, 1, h, w), size=(h * th, w * tw), mode="bilinear", align_corners=False
    )
    return frames.reshape(B, t, h * th, w * tw).repeat_interleave(tt, dim=1)


def _capture(module: nn.Module, store: list[torch.Tensor]) -> Callable:
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        # A fresh leaf: the gradient is taken with respect to it alone, so frozen
        # encoder weights (requires_grad False) still give a map and no weight
        # gradients are computed.
        leaf = output.detach().requires_grad_(True)
        store.append(leaf)
        return leaf

    return module.register_forward_hook(hook)


def grad_cam(
    encoder: FMAE, probe: nn.Module, clip: torch.Tensor, target: int | torch.Tensor | None = None, pool: str = "mean"
) -> GradCAM:
    """Grad-CAM of ``probe(encode_clips(encoder, clip, pool))`` over the encoder's tokens
    (``pool`` ``"mean"``: ``probe(encoder.forward_features(clip))``; see
    :data:`fmae.downstream.features.POOLS`: with ``mean_std`` the probe is no longer linear
    in the tokens, and the map is the usual first-order Grad-CAM of it).

    Args:
        encoder: an :class:`fmae.model.FMAE` (its encoder half is used).
        probe: maps pooled features ``[B, D]`` to ``[B, K]`` (e.g.
            :class:`fmae.downstream.head.LinearProbe`); both are put in eval mode.
        clip: float ``[B, C, T, H, W]`` of the encoder's sizes, on its device.
        target: the output to explain: an int for every clip, an int64 ``[B]``, or
            ``None`` for the predicted class (output 0 of a one-output probe).

    Returns:
        :class:`GradCAM` ``(heat [B, T, H, W], tokens [B, T', Hp, Wp], logits [B, K], target [B])``.
    """
    encoder.eval()
    probe.eval()
    store: list[torch.Tensor] = []
    handle = _capture(encoder.norm, store)
    try:
        with torch.enable_grad():
            logits = probe(encode_clips(encoder, clip, pool)).float()
            if logits.dim() != 2 or logits.shape[0] != clip.shape[0]:
                raise ValueError(f"the probe must give [B, K] outputs, got {tuple(logits.shape)}")
            B, K = logits.shape
            if target is None:
                target = logits.detach().argmax(1)
            target = torch.as_tensor(target, dtype=torch.int64, device=logits.device).expand(B)
            if bool(((target < 0) | (target >= K)).any()):
                raise ValueError(f"target {target.tolist()} is outside the probe's {K} outputs")
            score = logits.gather(1, target.unsqueeze(1)).squeeze(1)
            relevance = token_relevance(store[0], score)
    finally:
        handle.remove()
    c = encoder.config
    tokens = relevance.reshape(B, *c.grid)
    heat = upsample_tokens(tokens, c.tubelet)
    peak = heat.flatten(1).amax(1).view(B, 1, 1, 1)
    # A zero map stays zero instead of becoming 0/0.
    heat = heat / peak.clamp_min(torch.finfo(heat.dtype).tiny)
    return GradCAM(heat, tokens, logits.detach(), target)
