import pytest
import torch

from fmae.losses import adversarial_loss, discriminator_loss, generator_loss, reconstruction_loss


def _logits(seed, shape=(3, 7), scale=3.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_reconstruction_is_mse_over_masked_cubes_in_float32():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 12, generator=g), torch.randn(2, 5, 12, generator=g)
    loss = reconstruction_loss(pred, target)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, ((pred - target) ** 2).sum() / pred.numel())
    low = reconstruction_loss(pred.bfloat16(), target)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ((pred.bfloat16().float() - target) ** 2).mean())


def test_discriminator_loss_is_eq5_negated():
    real, fake = _logits(1), _logits(2)
    expected = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    torch.testing.assert_close(discriminator_loss(real, fake), expected)
    assert discriminator_loss(real.bfloat16(), fake.bfloat16()).dtype == torch.float32
    # Stable where sigmoid saturates: a confident, correct critic has a loss near 0.
    sure = discriminator_loss(torch.full((2, 3), 200.0), torch.full((2, 3), -200.0))
    assert torch.isfinite(sure) and sure < 1e-6


def test_adversarial_loss_is_non_saturating():
    fake = _logits(3)
    torch.testing.assert_close(adversarial_loss(fake), -torch.sigmoid(fake).log().mean())
    # When D confidently rejects the reconstructions, -log D still has a gradient of
    # about -1/M per logit, where eq. 6's log(1 - D) would have almost none.
    rejected = torch.full((1, 4), -15.0, requires_grad=True)
    adversarial_loss(rejected).backward()
    torch.testing.assert_close(rejected.grad, torch.full((1, 4), -0.25), rtol=1e-4, atol=0)
    saturating = torch.full((1, 4), -15.0, requires_grad=True)
    (1 - torch.sigmoid(saturating)).log().mean().backward()
    assert saturating.grad.abs().max() < 1e-6


def test_generator_loss():
    g = torch.Generator().manual_seed(4)
    pred, target, fake = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g), _logits(5, (2, 3))
    total, parts = generator_loss(pred, target, fake, 0.3)
    torch.testing.assert_close(total, reconstruction_loss(pred, target) + 0.3 * adversarial_loss(fake))
    assert set(parts) == {"rec", "adv"}
    off, parts = generator_loss(pred, target, None, 0.0)
    torch.testing.assert_close(off, reconstruction_loss(pred, target))
    assert set(parts) == {"rec"}
    adv_only, parts = generator_loss(pred, target, fake, 0.3, rec_weight=0.0)  # Table V's AL rows
    torch.testing.assert_close(adv_only, 0.3 * adversarial_loss(fake))
    torch.testing.assert_close(parts["rec"], reconstruction_loss(pred, target))


def test_bad_input_raises():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(x, x[:, :2])
    with pytest.raises(ValueError, match="adv_weight"):
        generator_loss(x, x, None, -1.0)
    with pytest.raises(ValueError, match="fake_logits"):
        generator_loss(x, x, None, 0.5)
    with pytest.raises(ValueError, match="not both 0"):
        generator_loss(x, x, None, 0.0, rec_weight=0.0)
