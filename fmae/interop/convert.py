"""Converting a checkpoint: read any supported source, write FMAE weights or a Hugging Face folder.

The job that ``python -m fmae.convert`` runs (:func:`convert`, configured by
:class:`ConvertConfig`). FMAE weights are ``NAME.safetensors`` + ``NAME.json``
(:mod:`fmae.weights`): kind ``fmae-model`` when the source has a decoder, else
``fmae-encoder``, the JSON recording where they came from and every note of the
conversion (what was inferred, dropped or rescaled).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from fmae.interop.assemble import Overrides
from fmae.interop.detect import FORMATS, read_source
from fmae.interop.hf import write_hf
from fmae.runtime.config import check_choices, setting
from fmae.weights import ENCODER_KIND, MODEL_KIND, config_path, save_encoder, save_model


@dataclasses.dataclass
class ConvertConfig:
    """Conversion of a checkpoint to FMAE's weights or to a Hugging Face folder."""

    src: str = setting("", "the checkpoint to read (also the first positional argument)")
    dst: str = setting(
        "", "where to write: NAME.safetensors (--to fmae) or a folder (--to hf); also the second positional argument"
    )
    from_format: str = setting(
        "auto", "the source's format (also --from); auto: detected from its files and keys", ("auto", *FORMATS)
    )
    to: str = setting(
        "fmae",
        "fmae: FMAE weights (.safetensors + .json); hf: a transformers folder, of "
        "VideoMAEForPreTraining when there is a decoder, else of VideoMAEModel (the encoder: see "
        "--encoder-only)",
        ("fmae", "hf"),
    )
    encoder_only: bool = setting(False, "write the encoder alone even when the source has a decoder")
    num_heads: int = setting(0, "attention heads of the encoder; 0: the source's config, else width / 64")
    decoder_num_heads: int = setting(0, "attention heads of the decoder; 0: the source's config, else width / 64")
    img_size: int = setting(0, "clip side in pixels; 0: the source's config or position table, else 224")
    num_frames: int = setting(0, "frames per clip; 0: the source's config or position table, else 16")
    layer_norm_eps: float = setting(
        0.0, "LayerNorm epsilon of the blocks; 0: the source's (VideoMAE 1e-6, MARLIN 1e-5, HF its config)"
    )
    norm_pix_loss: str = setting(
        "auto",
        "the decoder's targets: per-cube normalised (true) or pixels (false); "
        "auto: the source's config, else VideoMAE true, MARLIN false",
        ("auto", "true", "false"),
    )
    input_norm: str = setting(
        "imagenet",
        "imagenet: the model takes FMAE's ImageNet-normalised clips (MARLIN's "
        "[0, 1] input scaling is folded into its weights); source: the source's own input",
        ("imagenet", "source"),
    )
    overwrite: bool = setting(False, "replace DST if it exists")

    def __post_init__(self) -> None:
        check_choices(self)
        if min(self.num_heads, self.decoder_num_heads, self.img_size, self.num_frames, self.layer_norm_eps) < 0:
            raise ValueError("num_heads, decoder_num_heads, img_size, num_frames and layer_norm_eps must be >= 0")

    def overrides(self) -> Overrides:
        return Overrides(
            num_heads=self.num_heads,
            decoder_num_heads=self.decoder_num_heads,
            img_size=self.img_size,
            num_frames=self.num_frames,
            layer_norm_eps=self.layer_norm_eps,
            norm_pix_loss={"auto": None, "true": True, "false": False}[self.norm_pix_loss],
            input_norm=self.input_norm,
        )


class ConvertResult(NamedTuple):
    path: Path
    """The ``.safetensors`` file or the Hugging Face folder written."""
    written: str
    """``fmae-model`` / ``fmae-encoder``, or the ``transformers`` class written."""
    source: dict[str, Any]
    """What was read (format, path, layout) and ``notes``, those of the writing included."""


def convert(config: ConvertConfig) -> ConvertResult:
    """Read ``config.src`` and write it to ``config.dst`` (see :class:`ConvertConfig`)."""
    if not config.src or not config.dst:
        raise ValueError("give the source and the destination: python -m fmae.convert SRC DST")
    dst = Path(config.dst).expanduser()
    if config.to == "fmae":
        if dst.suffix != ".safetensors":
            raise ValueError(f"FMAE weights go to NAME.safetensors (NAME.json is written beside it), got {dst}")
        if (dst.exists() or config_path(dst).exists()) and not config.overwrite:
            raise FileExistsError(f"{dst} (or its .json) exists (--overwrite to replace it)")
    converted = read_source(config.src, config.from_format, config.overrides())
    source = dict(converted.source)
    notes = source["notes"] = list(source.get("notes", []))
    with_decoder = converted.has_decoder and not config.encoder_only
    if config.to == "fmae":
        save = save_model if with_decoder else save_encoder
        save(converted.model, dst, {"source": source})
        written = MODEL_KIND if with_decoder else ENCODER_KIND
    else:
        written, more = write_hf(converted.model, dst, with_decoder, config.overwrite)
        notes.extend(more)
    return ConvertResult(dst, written, source)
