"""FMAE: a facial masked autoencoder for self-supervised engagement recognition.

The top of the package holds the commands (``python -m fmae.<command>``) and this face;
the library lives in subpackages named for their jobs, imported one way:
``runtime`` → ``ops`` (the kernels) → ``face`` → ``data`` → ``masking`` → ``model`` →
``weights`` → ``interop`` → ``figures`` → ``evaluation`` → ``pretraining`` → ``downstream``
→ ``experiments`` → ``benchmarking`` (``CONTRIBUTING.md``).

At the top of the package, for building a model or using a trained encoder::

    import fmae
    model = fmae.create("fmae_vit_tiny", img_size=112)  # a fresh FMAE model by size name
    encoder = fmae.load_encoder("runs/pretrain")       # or an exported / converted .safetensors
    features = encoder.forward_features(clips)          # [B, C, T, H, W] → [B, D]; pool=False: [B, N, D]
    video = fmae.extract_video(encoder, "lecture.mp4")  # a whole video: features [W, D], start_s, end_s

Other implementations' checkpoints (Hugging Face VideoMAE, VideoMAE / VideoMAE V2,
MARLIN) are converted once with ``python -m fmae.convert SRC OUT.safetensors``.
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any

# Run from a source checkout (``python -m pytest`` in the repository root puts it first on
# sys.path), this package has no compiled modules: also look in the installed copy, so
# ``fmae._C`` is found there.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"

__all__ = ["create", "extract_video", "load_encoder"]

if TYPE_CHECKING:
    from fmae.downstream.extract import extract_video
    from fmae.model import create
    from fmae.weights import load_encoder


def __getattr__(name: str) -> Any:
    # Lazy: ``import fmae`` stays cheap (no torch) until the loader is wanted.
    if name == "create":
        from fmae.model import create

        return create
    if name == "load_encoder":
        from fmae.weights import load_encoder

        return load_encoder
    if name == "extract_video":
        from fmae.downstream.extract import extract_video

        return extract_video
    raise AttributeError(f"module 'fmae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
