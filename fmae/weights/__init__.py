"""Weights and checkpoints on disk, as safetensors (no pickle: loading runs no code).

- :mod:`fmae.weights.format`: FMAE's weights format, ``NAME.safetensors`` + ``NAME.json``, for an
  encoder, a whole model or a probe (:func:`save_encoder`, :func:`load_encoder`, :func:`load_model`);
- :mod:`fmae.weights.checkpoint`: a run's checkpoints, written atomically, verified by a digest,
  the newest valid one found for ``--resume``.
"""

from fmae.weights.format import (
    ENCODER_KIND,
    ENCODER_PREFIXES,
    MODEL_KIND,
    LoadedModel,
    config_path,
    fingerprint,
    load_encoder,
    load_model,
    load_weights,
    read_meta,
    save_encoder,
    save_model,
    save_weights,
)

__all__ = [
    "ENCODER_KIND",
    "ENCODER_PREFIXES",
    "MODEL_KIND",
    "LoadedModel",
    "config_path",
    "fingerprint",
    "load_encoder",
    "load_model",
    "load_weights",
    "read_meta",
    "save_encoder",
    "save_model",
    "save_weights",
]
