"""Training a linear probe on frozen features (Adam, the paper's β = (0.5, 0.9))."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fmae.downstream.head import LinearProbe

BETAS: tuple[float, float] = (0.5, 0.9)
"""Adam's betas for the probe and for fine-tuning (paper III-A)."""
BALANCE: tuple[str, ...] = ("none", "weights", "sampler")
MIN_EPOCHS = 100
MIN_STEPS = 4000
"""Adam at the paper's lr 1e-4 moves a linear layer by about lr per step whatever the data
set's size, so a small set needs more epochs than a large one (:func:`default_epochs`). On
the default engagement set (120 clips, 4 batches an epoch) a probe of a pre-trained tiny
encoder read 0.35-0.40 after 100 epochs and 0.475 for every seed of 5 after 1000."""


def default_epochs(rows: int, batch_size: int) -> int:
    """Probe epochs when none are asked for: :data:`MIN_EPOCHS`, or more where that gives
    fewer than :data:`MIN_STEPS` optimiser steps over ``rows`` training rows."""
    batches = max(1, -(-rows // batch_size))
    return max(MIN_EPOCHS, -(-MIN_STEPS // batches))


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 ``[num_classes]``: ``N / (K · count_k)`` (scikit-learn's "balanced"),
    0 for a class absent from ``labels``."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), torch.zeros(()))


@contextlib.contextmanager
def _one_thread():
    # A linear layer on small batches is all synchronisation: with several threads on a
    # busy machine each step can wait ~100 ms for a descheduled worker (measured 40x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def probe_loss(out: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if targets.is_floating_point():
        return F.mse_loss(out.squeeze(1), targets)
    return F.cross_entropy(out, targets, weight=weight)


def train_probe(
    features: torch.Tensor,
    targets: torch.Tensor,
    out_dim: int,
    *,
    norm: str = "batchnorm",
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    balance: str = "none",
    seed: int = 0,
    progress: bool = False,
) -> LinearProbe:
    """Train a :class:`LinearProbe` on frozen features with Adam, β = :data:`BETAS`.

    Args:
        features: float ``[N, D]``, one row per clip.
        targets: int64 ``[N]`` classes in ``[0, out_dim)`` → cross-entropy, or float
            ``[N]`` scores → MSE on one output (``out_dim`` 1).
        balance: classes only: ``"weights"`` weights the loss by :func:`class_weights`,
            ``"sampler"`` draws batches with class-balanced probabilities (with
            replacement), ``"none"`` shuffles.

    Returns the probe in eval mode, on the CPU. Deterministic for a given ``seed``.
    """
    if features.dim() != 2 or targets.shape != features.shape[:1]:
        raise ValueError(
            f"features must be [N, D] and targets [N], got {tuple(features.shape)} and {tuple(targets.shape)}"
        )
    classify = not targets.is_floating_point()
    if not classify and out_dim != 1:
        raise ValueError(f"a regression probe has one output, got out_dim {out_dim}")
    if balance not in BALANCE or (balance != "none" and not classify):
        raise ValueError(f"balance must be one of {BALANCE} ('none' for regression), got {balance!r}")
    if classify and (targets.min() < 0 or targets.max() >= out_dim):
        raise ValueError(f"class targets must be in [0, {out_dim}), got {int(targets.min())}..{int(targets.max())}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the probe's initialisation
    probe = LinearProbe(features.shape[1], out_dim, norm)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, betas=BETAS, weight_decay=weight_decay)
    weight = class_weights(targets, out_dim) if balance == "weights" else None
    draw = class_weights(targets, out_dim)[targets] if balance == "sampler" else None
    n = features.shape[0]
    features = features.float()
    probe.train()
    with _one_thread():
        for _ in tqdm(range(epochs), disable=not progress, desc="probe", unit="epoch", dynamic_ncols=True):
            order = (
                torch.randperm(n, generator=generator)
                if draw is None
                else torch.multinomial(draw, n, True, generator=generator)
            )
            for idx in order.split(batch_size):
                if idx.numel() < 2 and norm == "batchnorm":
                    continue  # BatchNorm cannot normalise a batch of one
                loss = probe_loss(probe(features[idx]), targets[idx], weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return probe.eval()
