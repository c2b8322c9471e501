"""Which tubelet tokens the encoder does not see (the facial mask and the paper's baselines), and
which masked tokens the decoder reconstructs.

- :mod:`fmae.masking.strategies`: ``facial_mask``, ``random_mask``, ``tube_mask``, ``frame_mask``
  (``bool [B, N]``, True = masked), :func:`make_mask` by name, the budgets, and
  :func:`mask_generator`, the one seeding rule of a run's masks;
- :mod:`fmae.masking.decoder`: decoder masking (``decoder_targets``).
"""

from fmae.masking.decoder import (
    DECODER_STRATEGIES,
    decoder_priority,
    decoder_targets,
    num_decoder_targets,
    running_cell_order,
)
from fmae.masking.strategies import (
    DEFAULT_TUBELET,
    STRATEGIES,
    facial_mask,
    frame_mask,
    make_mask,
    mask_generator,
    num_masked,
    random_mask,
    token_grid,
    tube_mask,
)

__all__ = [
    "DECODER_STRATEGIES",
    "DEFAULT_TUBELET",
    "STRATEGIES",
    "decoder_priority",
    "decoder_targets",
    "facial_mask",
    "frame_mask",
    "make_mask",
    "mask_generator",
    "num_decoder_targets",
    "num_masked",
    "random_mask",
    "running_cell_order",
    "token_grid",
    "tube_mask",
]
