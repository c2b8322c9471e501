"""The discriminator of FMAE's adversarial loss (paper eqs. 5-8)."""

from __future__ import annotations

import torch
import torch.nn as nn

from fmae.model.vit import FMAEConfig, init_weights


class Discriminator(nn.Module):
    """Judges single cubes real or reconstructed: an MLP applied to each cube alone.

    Like a PatchGAN critic at cube scale, it sees one flattened ``tt×th×tw×C`` cube at a
    time (in the same space as the reconstruction targets, i.e. normalised per cube when
    ``norm_pix_loss``), so its cost is linear in the number of masked cubes and it
    pushes every reconstructed cube towards realistic detail:
    ``[Linear → GELU] × depth → Linear(·, 1)``. There is no input normalisation on
    purpose: a blurred reconstruction has less variance than a real cube, and that is
    exactly what the critic should be able to see.
    """

    def __init__(self, cube_dim: int, dim: int = 512, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = cube_dim
        for _ in range(depth):
            layers += [nn.Linear(width, dim), nn.GELU()]
            width = dim
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    @classmethod
    def from_config(cls, config: FMAEConfig) -> "Discriminator":
        return cls(config.cube_dim, config.disc_dim, config.disc_depth)

    def forward(self, cubes: torch.Tensor) -> torch.Tensor:
        """cubes: ``[B, M, P]`` → logits ``[B, M]`` (high = real)."""
        return self.net(cubes).squeeze(-1)
