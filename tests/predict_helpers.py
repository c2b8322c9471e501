"""A tiny predictor for ``python -m fmae.predict`` tests: a random-init encoder and the probe meta
that names it (the predict tests check faces, windows and outputs, not what a random model says)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from fmae.downstream.head import LinearProbe, save_probe
from fmae.model import FMAE, get_config
from fmae.weights import fingerprint, save_encoder

CLASSES = ("very low", "low", "high", "very high")


def tiny_predictor(
    folder: Path, class_names: Sequence[str] = CLASSES, img_size: int = 32, num_frames: int = 4, stride: int = 2
) -> tuple[FMAE, Path, dict]:
    """``(encoder, its file in folder, probe meta)``: ``fmae_vit_tiny`` seeded 0, in eval mode, and the
    meta of a DAiSEE-style classification probe on it (clips of ``num_frames`` frames ``stride`` apart)."""
    torch.manual_seed(0)
    encoder = FMAE(get_config("fmae_vit_tiny", img_size=img_size, num_frames=num_frames)).eval()
    path = save_encoder(encoder, Path(folder) / "encoder.safetensors")
    meta = {
        "task": "daisee",
        "kind": "classification",
        "class_names": list(class_names),
        "img_size": img_size,
        "num_frames": num_frames,
        "temporal_stride": stride,
        "encoder": str(path),
        "encoder_fingerprint": fingerprint(encoder),
    }
    return encoder, path, meta


def random_probe(folder: Path, class_names: Sequence[str] = CLASSES) -> str:
    """A random linear probe on :func:`tiny_predictor`'s encoder, saved in ``folder``; its path."""
    encoder, _, meta = tiny_predictor(folder, class_names)
    probe = LinearProbe(encoder.config.embed_dim, len(class_names), "none")
    return str(save_probe(probe, Path(folder) / "probe.safetensors", meta))
