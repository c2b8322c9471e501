"""Analytic FLOP count of FMAE pre-training: encoder, decoder, discriminator, one step.

What is counted: the FLOPs of matrix products, 2 per multiply-add — every ``Linear``
and the two products of attention, ``q·kᵀ`` and ``softmax·v``. This is the count of
``torch.utils.flop_counter.FlopCounterMode`` (``tests/model/test_flops.py`` holds the two
equal on a small model) and the usual basis of "model FLOPs utilisation". Element-wise
work (LayerNorm, GELU, softmax, the losses, AdamW) is left out: it grows as ``L·D``
against the products' ``L·D²`` and ``L²·D``, and is memory-bound anyway.

The count is the algorithm's, not an implementation's: an implementation that embeds
all ``N`` cubes before dropping the masked ones (HF's VideoMAE does) does more work
than counted here, and its FLOP/s computed from this count is its *useful* FLOP/s.

Symbols (per clip; ``B`` clips in a batch): ``N`` tokens, ``M`` masked, ``V = N − M``
visible, ``K`` masked tokens the decoder reconstructs (``K = M`` without decoder masking,
``round(keep·M)`` with it: :func:`fmae.masking.num_decoder_targets`), ``L = V + K`` the
decoder's tokens; encoder width ``D``, MLP width ``F = int(D·mlp_ratio)``, depth ``Le``;
decoder ``Dd``, ``Fd``, ``Ld``; ``P`` numbers per cube.

- A transformer block over ``L`` tokens of width ``D`` (MLP width ``F``), forward:
  ``2BL·(4D² + 2DF)`` for qkv, proj and the MLP, plus ``4BL²D`` for attention (the
  heads split ``D``, so their count sums to that of one head of width ``D``).
- Backward of a product is twice its forward (the gradient of the input and of the
  weight) — except where the input needs no gradient: the patch embedding reads the
  clip's cubes, so its backward is the weight gradient only, once its forward.
- Encoder forward: ``2BVPD`` (embedding of the visible cubes) ``+ Le·block(V, D, F)``;
  backward: ``2BVPD + 2·Le·block(V, D, F)``.
- Decoder forward: ``2BVDDd`` (``decoder_embed``) ``+ Ld·block(L, Dd, Fd) + 2BKDdP``
  (the head, on the reconstructed tokens only); backward twice that. Without decoder
  masking ``L = N``. With a decoder hint, ``+ 2BKPDd`` for its embedding, whose backward
  (no input gradient) is its forward once; ``interp_nearest`` embeds every target's cube twice
  (the interpolation's layer and the nearest cube's, then picks) and adds ``2BKDd`` for the
  gate, whose backward is twice its forward.
- Discriminator (``λ > 0``), an MLP applied per masked cube, ``c = Σ 2·in·out`` per
  cube over its layers: its update runs it forward on the real and the reconstructed
  cubes and back to its weights (``2·BK·(c + c − c₀)``: no input gradient, so its
  first layer ``c₀`` back-propagates only once); the generator's adversarial term
  runs it forward once more and back to its input only (``BK·c + BK·c``).
"""

from __future__ import annotations

from typing import NamedTuple

from fmae.masking import num_decoder_targets
from fmae.masking import num_masked as _num_masked
from fmae.model import FMAEConfig


class StepFlops(NamedTuple):
    """Matrix-product FLOPs of one pre-training step, by part."""

    encoder_forward: int
    encoder_backward: int
    decoder_forward: int
    decoder_backward: int
    discriminator: int
    """Forward and backward of all its passes (0 without the adversarial loss)."""

    @property
    def encoder(self) -> int:
        return self.encoder_forward + self.encoder_backward

    @property
    def decoder(self) -> int:
        return self.decoder_forward + self.decoder_backward

    @property
    def total(self) -> int:
        return self.encoder + self.decoder + self.discriminator


def _check_counts(batch_size: int, *counts: int) -> None:
    for value in (batch_size, *counts):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"batch sizes and token counts must be non-negative ints, got {value!r}")


def block_forward_flops(batch_size: int, length: int, dim: int, hidden: int) -> int:
    """Forward FLOPs of one pre-norm transformer block over ``[batch_size, length, dim]``
    with MLP width ``hidden``."""
    _check_counts(batch_size, length, dim, hidden)
    return 2 * batch_size * length * (4 * dim * dim + 2 * dim * hidden) + 4 * batch_size * length * length * dim


def encoder_flops(config: FMAEConfig, batch_size: int, num_visible: int) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of the encoder on ``num_visible`` tokens per clip,
    from the cubes to the final norm (the backward stops at the embedding's weight)."""
    _check_counts(batch_size, num_visible)
    c = config
    embed = 2 * batch_size * num_visible * c.cube_dim * c.embed_dim
    blocks = c.depth * block_forward_flops(batch_size, num_visible, c.embed_dim, int(c.embed_dim * c.mlp_ratio))
    return embed + blocks, embed + 2 * blocks


def decoder_flops(
    config: FMAEConfig, batch_size: int, num_masked: int, num_targets: int | None = None
) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of the decoder from the encoder's latent to the
    ``num_targets`` predicted cubes per clip (default ``num_masked``: no decoder
    masking); the backward includes the latent's gradient."""
    num_targets = num_masked if num_targets is None else num_targets
    _check_counts(batch_size, num_masked, num_targets)
    c = config
    n, dd = c.num_tokens, c.decoder_embed_dim
    if num_masked > n:
        raise ValueError(f"num_masked {num_masked} exceeds the {n} tokens of the config")
    if num_targets > num_masked:
        raise ValueError(f"num_targets {num_targets} exceeds num_masked {num_masked}")
    length = n - num_masked + num_targets
    embed = 2 * batch_size * (n - num_masked) * c.embed_dim * dd
    blocks = c.decoder_depth * block_forward_flops(batch_size, length, dd, int(dd * c.mlp_ratio))
    head = 2 * batch_size * num_targets * dd * c.cube_dim
    # The hint's embedding reads cubes, which need no gradient: its backward is its weight's only.
    embeddings = {"none": 0, "temporal_interp": 1, "interp_nearest": 2}[c.decoder_hint]
    hint = embeddings * 2 * batch_size * num_targets * c.cube_dim * dd
    gate = 2 * batch_size * num_targets * dd if c.decoder_hint == "interp_nearest" else 0
    return embed + blocks + head + hint + gate, 2 * (embed + blocks + head + gate) + hint


def discriminator_flops(config: FMAEConfig, batch_size: int, num_masked: int) -> int:
    """FLOPs of every discriminator pass in one step with ``λ > 0`` (see the module
    docstring) on ``num_masked`` cubes per clip: the reconstructed ones, ``K``."""
    _check_counts(batch_size, num_masked)
    c = config
    widths = [c.cube_dim] + [c.disc_dim] * c.disc_depth + [1]
    per_layer = [2 * a * b for a, b in zip(widths[:-1], widths[1:])]
    per_cube, first = sum(per_layer), per_layer[0]
    update = 2 * (per_cube + 2 * per_cube - first)  # real and fake: forward, backward to the weights
    generator = 2 * per_cube  # forward on the reconstructions, backward to its input
    return batch_size * num_masked * (update + generator)


def step_flops(
    config: FMAEConfig,
    batch_size: int,
    mask_ratio: float,
    strategy: str = "random",
    adv_weight: float = 0.0,
    decoder_keep: float = 1.0,
) -> StepFlops:
    """FLOPs of one :meth:`fmae.pretraining.step.Pretrainer.step` on ``batch_size`` clips.

    The number of masked tokens is :func:`fmae.masking.num_masked` ``(strategy, grid,
    mask_ratio)`` (the same for ``facial`` and ``random``); ``decoder_keep < 1`` (decoder
    masking) runs the decoder, its head and the discriminator on
    :func:`fmae.masking.num_decoder_targets` of them; ``adv_weight > 0`` adds the
    discriminator's passes.
    """
    if adv_weight < 0:
        raise ValueError(f"adv_weight must be >= 0, got {adv_weight}")
    m = _num_masked(strategy, config.grid, mask_ratio)
    k = num_decoder_targets(m, decoder_keep)
    enc = encoder_flops(config, batch_size, config.num_tokens - m)
    dec = decoder_flops(config, batch_size, m, k)
    disc = discriminator_flops(config, batch_size, k) if adv_weight > 0 else 0
    return StepFlops(*enc, *dec, disc)
