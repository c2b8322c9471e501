import pytest
import torch

from fmae.model.losses import (
    ADV_LOSSES,
    adversarial_loss,
    critic_loss,
    discriminator_loss,
    generator_loss,
    reconstruction_loss,
)


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


def test_wgan_losses_on_a_hand_example():
    # Two clips of two cubes each: real scores mean 2.5, fake scores mean -0.5.
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fake = torch.tensor([[0.0, -1.0], [1.0, -2.0]])
    assert critic_loss(real, fake).item() == pytest.approx(-0.5 - 2.5)
    assert discriminator_loss(real, fake, "wgan").item() == pytest.approx(-3.0)
    assert adversarial_loss(fake, "wgan").item() == pytest.approx(0.5)
    assert discriminator_loss(real.bfloat16(), fake.bfloat16(), "wgan").dtype == torch.float32
    g = torch.Generator().manual_seed(6)
    pred, target = torch.randn(2, 2, 8, generator=g), torch.randn(2, 2, 8, generator=g)
    total, parts = generator_loss(pred, target, fake, 0.01, adv_loss="wgan")
    torch.testing.assert_close(total, reconstruction_loss(pred, target) + 0.01 * 0.5)
    assert parts["adv"].item() == pytest.approx(0.5)
    # The default form is still the paper's BCE.
    torch.testing.assert_close(
        generator_loss(pred, target, fake, 0.01)[0],
        reconstruction_loss(pred, target) + 0.01 * adversarial_loss(fake, "bce"),
    )


def test_wgan_gradient_signs():
    """The critic's step raises real scores and lowers fake ones; the generator's term
    raises the fake scores, by the same amount per cube however sure the critic is."""
    real = torch.tensor([[1.0, 50.0, -3.0]], requires_grad=True)
    fake = torch.tensor([[-40.0, 0.0, 2.0]], requires_grad=True)
    critic_loss(real, fake).backward()
    torch.testing.assert_close(real.grad, torch.full((1, 3), -1 / 3))  # descent raises D(real)
    torch.testing.assert_close(fake.grad, torch.full((1, 3), 1 / 3))  # descent lowers D(fake)
    scores = fake.detach().clone().requires_grad_(True)
    adversarial_loss(scores, "wgan").backward()
    torch.testing.assert_close(scores.grad, torch.full((1, 3), -1 / 3))  # descent raises D(fake)
    # Through a critic: the generator's gradient moves a reconstruction along the
    # direction in which the critic scores higher.
    w = torch.tensor([0.5, -2.0, 1.0])
    x = torch.zeros(1, 1, 3, requires_grad=True)
    adversarial_loss(x @ w, "wgan").backward()
    torch.testing.assert_close(-x.grad[0, 0], w)


@pytest.mark.parametrize("form", ADV_LOSSES)
def test_both_forms_train_a_critic_that_separates_real_from_fake(form):
    g = torch.Generator().manual_seed(7)
    real, fake = torch.randn(64, 4, generator=g) + 1.0, torch.randn(64, 4, generator=g) - 1.0
    torch.manual_seed(0)
    critic = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(critic.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        discriminator_loss(critic(real).squeeze(-1)[None], critic(fake).squeeze(-1)[None], form).backward()
        opt.step()
    with torch.no_grad():
        assert critic(real).mean() > critic(fake).mean() + 1.0


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
    with pytest.raises(ValueError, match="form"):
        generator_loss(x, x, torch.zeros(2, 3), 0.5, adv_loss="hinge")
    with pytest.raises(ValueError, match="form"):
        discriminator_loss(torch.zeros(2, 3), torch.zeros(2, 3), "lsgan")


def test_a_pretraining_step_with_the_wgan_critic():
    from fmae.model import get_config
    from fmae.pretraining.step import PretrainConfig, Pretrainer

    with pytest.raises(ValueError, match="adversarial loss"):
        PretrainConfig(adv_loss="hinge")
    torch.manual_seed(0)
    run = Pretrainer(
        get_config("fmae_vit_tiny", img_size=32, num_frames=4),
        PretrainConfig(
            strategy="random",
            mask_ratio=0.5,
            adv_weight=0.01,
            adv_loss="wgan",
            batch_size=2,
            base_lr=1e-3 * 256 / 2,
            total_steps=20,
        ),
    )
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(2, 3, 4, 32, 32, generator=g)
    stats = [run.step(clip, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    # The critic learns to score the real cubes above the reconstructions: its loss goes below 0.
    assert all("disc_loss" not in s for s in stats)  # a BCE collapse check must not read the critic's loss
    critic = [float(s["critic_loss"]) for s in stats]
    assert critic[-1] < min(critic[0], 0.0), critic
    for s in stats:
        torch.testing.assert_close(s["loss"], s["rec_loss"] + 0.01 * s["adv_loss"])
