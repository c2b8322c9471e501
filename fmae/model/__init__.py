"""The model: the FMAE masked autoencoder, its discriminator, its losses and their FLOP count.

- :mod:`fmae.model.vit`: :class:`FMAE` (ViT encoder + decoder), :class:`FMAEConfig`, the size
  registry (:func:`create`, :func:`get_config`) and the cube layout (:func:`patchify`);
- :mod:`fmae.model.hint`: what the decoder may be told of a hidden cube (:data:`DECODER_HINTS`);
- :mod:`fmae.model.discriminator`: :class:`Discriminator`, the adversarial critic on cubes;
- :mod:`fmae.model.losses`: the reconstruction and adversarial losses (paper eqs. 4-8);
- :mod:`fmae.model.flops`: the analytic FLOP count of a pre-training step.
"""

from fmae.model.discriminator import Discriminator
from fmae.model.hint import DECODER_HINTS, temporal_interp
from fmae.model.vit import (
    FMAE,
    MODEL_CONFIGS,
    FMAEConfig,
    Reconstruction,
    create,
    get_config,
    grid_sinusoid_table,
    normalize_cubes,
    patchify,
    sinusoid_table,
    unpatchify,
)

__all__ = [
    "DECODER_HINTS",
    "FMAE",
    "MODEL_CONFIGS",
    "Discriminator",
    "FMAEConfig",
    "Reconstruction",
    "create",
    "get_config",
    "grid_sinusoid_table",
    "normalize_cubes",
    "patchify",
    "sinusoid_table",
    "temporal_interp",
    "unpatchify",
]
