"""The probe: a normalisation and a linear layer on pooled encoder features, and its file.

A probe is saved as ``NAME.safetensors`` + ``NAME.json`` (:func:`fmae.weights.save_weights`,
kind :data:`PROBE_KIND`); the JSON carries what a user of the probe needs (task, class
names, clip sampling, the encoder's fingerprint).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fmae.weights import load_weights, save_weights

PROBE_KIND = "fmae-probe"
HEAD_NORMS: tuple[str, ...] = ("batchnorm", "layernorm", "none")


class LinearProbe(nn.Module):
    """A normalisation (see :data:`HEAD_NORMS`) then ``Linear(in_dim, out_dim)``.

    float ``[B, in_dim]`` features → ``[B, out_dim]`` logits (classification) or scores
    (regression, ``out_dim = 1``).
    """

    def __init__(self, in_dim: int, out_dim: int, norm: str = "batchnorm") -> None:
        super().__init__()
        if norm not in HEAD_NORMS:
            raise ValueError(f"norm must be one of {HEAD_NORMS}, got {norm!r}")
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"in_dim and out_dim must be positive, got {in_dim}, {out_dim}")
        self.in_dim, self.out_dim, self.norm_kind = in_dim, out_dim, norm
        if norm == "batchnorm":
            self.norm: nn.Module = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6)
        elif norm == "layernorm":
            self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        else:
            self.norm = nn.Identity()
        self.linear = nn.Linear(in_dim, out_dim)
        # MAE's linear-probe initialisation: small weights, zero bias.
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features))


def save_probe(probe: LinearProbe, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``probe`` to ``path`` (``.safetensors``), and its shape plus ``meta`` (what a
    user of the probe needs: task, class names, clip sampling, encoder fingerprint) to
    the JSON beside it (:func:`fmae.weights.save_weights`)."""
    return save_weights(
        path,
        probe,
        PROBE_KIND,
        {"in_dim": probe.in_dim, "out_dim": probe.out_dim, "norm": probe.norm_kind, "meta": meta},
    )


def load_probe(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LinearProbe, dict[str, Any]]:
    """``(probe in eval mode, meta)`` from :func:`save_probe`'s files (local paths only)."""
    state, config = load_weights(path, PROBE_KIND, device)
    try:
        probe = LinearProbe(config["in_dim"], config["out_dim"], config["norm"]).to(device)
        probe.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path}: the tensors and config do not make a probe: {e}") from e
    return probe.eval(), config.get("meta", {})
