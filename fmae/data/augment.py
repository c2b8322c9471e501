"""Clip augmentation for pre-training: mirror, crop and colour, drawn per clip from the
seed and the step.

A masked autoencoder trained on few people learns who is in front of which background
and paints that person's face into the hidden tokens; on a person it never saw, that is
worse than the mean face. Mirroring, shifting and scaling the face, and changing its
colours give each training person many looks, so what the model can learn is where a
face's parts are, not whose they are.

Each kind acts on a whole clip (every frame alike), so motion is kept, and moves the
region map with the pixels, so the facial mask still hides the parts it names:

- ``flip``: a mirror image, half the clips; the left and right eye swap ids;
- ``crop``: a square of 80–100 % of the side at a random place, scaled back to the full
  size (bilinear pixels, nearest region ids); outside the frame it repeats the border;
- ``colour``: a gain of 0.8–1.2 per channel and a brightness shift of ±0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmae.data.clips import IMAGENET_MEAN, IMAGENET_STD
from fmae.face.regions import FaceRegion

AUGMENTATIONS: tuple[str, ...] = ("flip", "crop", "colour")
MIN_CROP = 0.8
GAIN = 0.2
SHIFT = 0.1


def parse_augmentations(text: str) -> tuple[str, ...]:
    """``"flip,crop"`` → ``("flip", "crop")``; ``""`` or ``"none"``: no augmentation.

    Raises ``ValueError`` naming the unknown kinds.
    """
    if text.strip().lower() in ("", "none"):
        return ()
    kinds = tuple(k.strip().lower() for k in text.split(","))
    unknown = [k for k in kinds if k not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(map(repr, unknown))}: choose from {', '.join(AUGMENTATIONS)} or none"
        )
    return tuple(k for k in AUGMENTATIONS if k in kinds)


def augment_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of step ``step``'s augmentations, seeded by ``(seed, step)`` and apart
    from the masks' stream: a resumed run augments its steps as an uninterrupted one does."""
    return torch.Generator().manual_seed(seed * 1_000_033 + step + 7_919)


def augment_clips(
    clip: torch.Tensor,
    region_map: torch.Tensor,
    kinds: tuple[str, ...],
    generator: torch.Generator,
    offset: int = 0,
    total: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of clips and their region maps alike.

    Args:
        clip: ``float [B, 3, T, H, W]``, normalised as :func:`fmae.data.clips.normalise_clip` does.
        region_map: ``uint8 [B, T, H, W]`` :class:`fmae.face.FaceRegion` ids.
        kinds: a subset of :data:`AUGMENTATIONS` (:func:`parse_augmentations`).
        generator: a CPU generator (:func:`augment_generator`).
        offset, total: this batch is clips ``offset … offset + B`` of a global batch of
            ``total`` (default ``B``): every process of a distributed run draws the whole
            global batch's parameters and takes its own, so the run augments as one
            process with the global batch does.

    Returns:
        ``(clip, region_map)``: new tensors of the same shapes, dtypes and devices.
    """
    b, c, t, h, w = clip.shape
    if c != 3 or region_map.shape != (b, t, h, w):
        raise ValueError(
            "clip [B, 3, T, H, W] and region_map [B, T, H, W] do not match: "
            f"{tuple(clip.shape)}, {tuple(region_map.shape)}"
        )
    total = b if total is None else total
    draws = torch.rand(total, 8, generator=generator)[offset : offset + b].to(clip.device)
    if "flip" in kinds:
        clip, region_map = _flip(clip, region_map, draws[:, 0] < 0.5)
    if "crop" in kinds:
        clip, region_map = _crop(clip, region_map, draws[:, 1:4])
    if "colour" in kinds:
        clip = _colour(clip, draws[:, 4:8])
    return clip, region_map


def _flip(clip: torch.Tensor, region_map: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mirrored = region_map.flip(-1)
    eyes = (FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE)
    swapped = torch.where(mirrored == eyes[0], eyes[1], torch.where(mirrored == eyes[1], eyes[0], mirrored))
    pick = which.view(-1, 1, 1, 1)
    return torch.where(pick.unsqueeze(1), clip.flip(-1), clip), torch.where(
        pick, swapped.to(region_map.dtype), region_map
    )


def _crop(clip: torch.Tensor, region_map: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, t, h, w = clip.shape
    scale = MIN_CROP + (1 - MIN_CROP) * draws[:, 0]
    theta = torch.zeros(b, 2, 3, device=clip.device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = (1 - scale).unsqueeze(1) * (2 * draws[:, 1:3] - 1)  # the square stays inside the frame
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    frames = clip.reshape(b, c * t, h, w)
    cropped = F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    ids = F.grid_sample(region_map.float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return cropped.to(clip.dtype).reshape(b, c, t, h, w), ids.round().to(region_map.dtype)


def _colour(clip: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=clip.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=clip.device).view(1, 3, 1, 1, 1)
    gain = (1 + GAIN * (2 * draws[:, :3] - 1)).view(-1, 3, 1, 1, 1)
    shift = (SHIFT * (2 * draws[:, 3] - 1)).view(-1, 1, 1, 1, 1)
    pixels = (clip.float() * std + mean) * gain + shift
    return ((pixels.clamp(0, 1) - mean) / std).to(clip.dtype)
