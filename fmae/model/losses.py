"""FMAE's losses (paper eqs. 4–8), all computed in float32.

- Reconstruction (eq. 4): mean squared error between the masked cubes ``K_m`` and their
  reconstructions ``K'_m``, averaged over masked cubes only.
- Discriminator (eqs. 5, 8): binary cross-entropy with real masked cubes → 1 and
  reconstructions → 0, i.e. the negative of eq. 5's log-likelihood, which D maximises.
- Generator (eqs. 6, 7): ``L_r + λ·L_adv``. Eq. 6's ``log(1 − D(K'_m))`` saturates when
  D wins early; as the paper advises, the non-saturating ``−log D(K'_m)`` (BCE of the
  reconstructions against the label "real") takes its place. The paper's eq. 7 is
  ``λ = 1``; ``λ = 0`` removes the adversarial term (and the caller skips D).

The adversarial pair comes in two forms (:data:`ADV_LOSSES`), picked by ``form``:

- ``"bce"``: the paper's, above (D outputs logits);
- ``"wgan"``: MARLIN's (Cai et al., CVPR 2023; its ViT-B config: ``adv_weight`` 0.01,
  no gradient penalty, one critic step per generator step), a Wasserstein critic
  without a Lipschitz constraint: critic loss ``mean D(K'_m) − mean D(K_m)``,
  generator term ``−mean D(K'_m)`` (D outputs unbounded scores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ADV_LOSSES: tuple[str, ...] = ("bce", "wgan")
"""The forms of the adversarial pair: the paper's BCE discriminator, MARLIN's WGAN critic."""


def _check_form(form: str) -> None:
    if form not in ADV_LOSSES:
        raise ValueError(f"adversarial loss form must be one of {ADV_LOSSES}, got {form!r}")


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4: MSE over masked cubes.

    pred, target: ``[B, M, P]`` (any float dtypes) → float32 scalar.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return F.mse_loss(pred.float(), target.float())


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, form: str = "bce") -> torch.Tensor:
    """D's loss on real masked cubes and (detached) reconstructions; float32 scalar.

    ``form`` ``"bce"`` (eqs. 5 and 8): ``BCE(D(real), 1) + BCE(D(fake), 0)``, each a mean
    over cubes. ``"wgan"``: :func:`critic_loss`.

    real_logits, fake_logits: discriminator outputs ``[B, M]`` (logits, or critic scores).
    """
    _check_form(form)
    real, fake = real_logits.float(), fake_logits.float()
    if form == "wgan":
        return critic_loss(real, fake)
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic: ``mean D(fake) − mean D(real)`` (the negated Wasserstein estimate,
    which the critic lowers by scoring real cubes up and reconstructions down).

    real_scores, fake_scores: ``[B, M]`` critic scores → float32 scalar.
    """
    return fake_scores.float().mean() - real_scores.float().mean()


def adversarial_loss(fake_logits: torch.Tensor, form: str = "bce") -> torch.Tensor:
    """The generator's adversarial term ``L_adv``; float32 scalar.

    ``form`` ``"bce"``: eq. 6, non-saturating, ``BCE(D(fake), 1) = mean −log D(K'_m)``.
    ``"wgan"``: ``−mean D(K'_m)``: a constant gradient ``−1/(B·M)`` on every score,
    however sure the critic is.

    fake_logits: ``[B, M]`` discriminator outputs of the reconstructions.
    """
    _check_form(form)
    fake = fake_logits.float()
    if form == "wgan":
        return -fake.mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def generator_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    fake_logits: torch.Tensor | None,
    adv_weight: float,
    rec_weight: float = 1.0,
    adv_loss: str = "bce",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7: ``L_g = L_r + λ·L_adv``, with ``L_r`` weighted by ``rec_weight`` (0 is the
    paper's "without reconstruction loss" ablation, Table V).

    Args:
        pred, target: ``[B, M, P]`` reconstructions and real masked cubes.
        fake_logits: ``[B, M]`` discriminator logits of ``pred``; ignored (may be
            ``None``) when ``adv_weight == 0``.
        adv_weight: ``λ >= 0``.
        rec_weight: ``>= 0``; ``L_r`` is still computed (and returned in ``parts``)
            when it is 0.
        adv_loss: the form of ``L_adv``, one of :data:`ADV_LOSSES` (see
            :func:`adversarial_loss`).

    Returns:
        ``(L_g, parts)``: float32 scalars; ``parts`` holds ``"rec"`` and, when
        ``λ > 0``, ``"adv"`` (both detached).
    """
    if adv_weight < 0 or rec_weight < 0 or adv_weight == rec_weight == 0:
        raise ValueError(f"adv_weight and rec_weight must be >= 0 and not both 0, got {adv_weight}, {rec_weight}")
    _check_form(adv_loss)
    rec = reconstruction_loss(pred, target)
    if adv_weight == 0:
        return rec_weight * rec, {"rec": rec.detach()}
    if fake_logits is None:
        raise ValueError("fake_logits are needed when adv_weight > 0")
    adv = adversarial_loss(fake_logits, adv_loss)
    return rec_weight * rec + adv_weight * adv, {"rec": rec.detach(), "adv": adv.detach()}
