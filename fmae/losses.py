"""FMAE's losses (paper eqs. 4–8), all computed in float32.

- Reconstruction (eq. 4): mean squared error between the masked cubes ``K_m`` and their
  reconstructions ``K'_m``, averaged over masked cubes only.
- Discriminator (eqs. 5, 8): binary cross-entropy with real masked cubes → 1 and
  reconstructions → 0, i.e. the negative of eq. 5's log-likelihood, which D maximises.
- Generator (eqs. 6, 7): ``L_r + λ·L_adv``. Eq. 6's ``log(1 − D(K'_m))`` saturates when
  D wins early; as the paper advises, the non-saturating ``−log D(K'_m)`` (BCE of the
  reconstructions against the label "real") takes its place. The paper's eq. 7 is
  ``λ = 1``; ``λ = 0`` removes the adversarial term (and the caller skips D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: MSE over masked cubes.

    pred, target: ``[B, M, P]`` (any float dtypes) → float32 scalar.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return F.mse_loss(pred.float(), target.float())


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eqs. 5 and 8: ``BCE(D(real), 1) + BCE(D(fake), 0)``, each a mean over cubes.

    real_logits, fake_logits: discriminator logits ``[B, M]`` → float32 scalar.
    """
    real, fake = real_logits.float(), fake_logits.float()
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6, non-saturating: ``BCE(D(fake), 1) = mean −log D(K'_m)``.

    fake_logits: ``[B, M]`` logits of the reconstructions → float32 scalar.
    """
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def generator_loss(pred: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor | None,
                   adv_weight: float, rec_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7: ``L_g = L_r + λ·L_adv``, with ``L_r`` weighted by ``rec_weight`` (0 is the
    paper's "without reconstruction loss" ablation, Table V).

    Args:
        pred, target: ``[B, M, P]`` reconstructions and real masked cubes.
        fake_logits: ``[B, M]`` discriminator logits of ``pred``; ignored (may be
            ``None``) when ``adv_weight == 0``.
        adv_weight: ``λ >= 0``.
        rec_weight: ``>= 0``; ``L_r`` is still computed (and returned in ``parts``)
            when it is 0.

    Returns:
        ``(L_g, parts)``: float32 scalars; ``parts`` holds ``"rec"`` and, when
        ``λ > 0``, ``"adv"`` (both detached).
    """
    if adv_weight < 0 or rec_weight < 0 or adv_weight == rec_weight == 0:
        raise ValueError(f"adv_weight and rec_weight must be >= 0 and not both 0, got {adv_weight}, {rec_weight}")
    rec = reconstruction_loss(pred, target)
    if adv_weight == 0:
        return rec_weight * rec, {"rec": rec.detach()}
    if fake_logits is None:
        raise ValueError("fake_logits are needed when adv_weight > 0")
    adv = adversarial_loss(fake_logits)
    return rec_weight * rec + adv_weight * adv, {"rec": rec.detach(), "adv": adv.detach()}
