"""The attention shapes FMAE's benchmarks time, one table for all: ``bench gpu``'s attention
check (:mod:`fmae.benchmarking.gpu.attention`, ViT-B's) and ``benchmarks/test_attention.py``.

``[B, heads, N, head_dim]`` with 16×224² clips (1568 tokens): the encoder sees the visible
tokens (157 at masking ratio 0.9, 784 at 0.5), the decoder all of them.
"""

from __future__ import annotations

from typing import NamedTuple


class AttentionShape(NamedTuple):
    """One attention call's shape but for the batch: ``[B, heads, tokens, head_dim]``."""

    name: str
    """``"encoder r0.9"`` (the part, and the masking ratio where it sees only the visible tokens)."""
    model: str
    """The model size, ``fmae_vit_<model>``."""
    heads: int
    tokens: int
    head_dim: int

    @property
    def slug(self) -> str:
        """``"encoder-base-r0.9"``: the part, the model, the ratio; the benchmarks' case id."""
        part, *rest = self.name.split()
        return "-".join([part, self.model, *rest])


ATTENTION_SHAPES: tuple[AttentionShape, ...] = (
    AttentionShape("encoder r0.9", "base", 12, 157, 64),
    AttentionShape("encoder r0.5", "base", 12, 784, 64),
    AttentionShape("decoder", "base", 6, 1568, 64),
    AttentionShape("decoder", "tiny", 4, 1568, 32),
)
VIT_B_ATTENTION: tuple[AttentionShape, ...] = tuple(s for s in ATTENTION_SHAPES if s.model == "base")
"""ViT-B's: the encoder at ratios 0.9 and 0.5, the decoder."""
