"""Pictures of clips as arrays and PNG grids: every figure FMAE draws goes through here.

The array functions (:func:`region_overlay`, :func:`mask_pixels`, :func:`masks_panel`,
:func:`heat_overlay`, :func:`tile`, :func:`reconstruction_rows`) build panels of uint8
``[F, H, W, 3]`` frames; :func:`save_grid` draws rows of them, titled, into a PNG of
exactly :func:`grid_size` pixels. Used by the pre-training run's reconstruction images
and by ``python -m fmae.viz``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fmae.data.clips import clip_to_frames
from fmae.model import unpatchify

REGION_COLOURS: np.ndarray = np.array(
    [
        [0, 200, 255],  # left eye
        [0, 90, 255],  # right eye
        [255, 220, 0],  # nose
        [230, 20, 60],  # mouth
        [140, 70, 20],  # hair
        [250, 170, 150],  # skin
        [40, 40, 40],  # background
    ],
    dtype=np.uint8,
)
"""uint8 ``[7, 3]`` RGB of each :class:`fmae.face.FaceRegion`, by id."""
MASK_COLOUR: tuple[int, int, int] = (128, 128, 128)
"""RGB of a masked pixel in ``masks.png`` and the masked input of ``reconstruction.png``."""

# Figure layout in pixels: fixed, so a grid of R rows and F frames has one known size.
_DPI = 100
_CELL, _LEFT, _TOP, _RIGHT, _LEGEND = 128, 120, 64, 8, 40


def shown_frames(num_frames: int, count: int) -> np.ndarray:
    """int64 ``[min(count, num_frames)]`` frame indices spread evenly over a clip."""
    return np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(np.int64)


def region_overlay(frames: np.ndarray, regions: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames blended with :data:`REGION_COLOURS` of uint8
    ``[T, H, W]`` region ids (``alpha`` is the colours' weight)."""
    if frames.shape[:3] != regions.shape or int(regions.max(initial=0)) >= len(REGION_COLOURS):
        raise ValueError(f"regions {regions.shape} must be ids < {len(REGION_COLOURS)} matching frames {frames.shape}")
    blend = (1 - alpha) * frames.astype(np.float32) + alpha * REGION_COLOURS[regions].astype(np.float32)
    return blend.round().astype(np.uint8)


def mask_pixels(mask: torch.Tensor, grid: Sequence[int], tubelet: Sequence[int]) -> np.ndarray:
    """bool ``[T, H, W]``: the pixels of the masked cubes of a token mask bool ``[N]``."""
    cubes = mask.detach().cpu().view(1, -1, 1).expand(1, -1, int(np.prod(tubelet))).float()
    return unpatchify(cubes, grid, tubelet, in_chans=1)[0, 0].numpy() > 0.5


def masks_panel(frames: np.ndarray, pixels: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 ``[S, T, H, W, 3]``: the frames ``[T, H, W, 3]`` once per bool ``[T, H, W]``
    mask of ``pixels``, masked pixels painted :data:`MASK_COLOUR`."""
    rows = np.repeat(frames[None], len(pixels), axis=0)
    for row, hidden in zip(rows, pixels):
        row[hidden] = MASK_COLOUR
    return rows


def heat_overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames under a jet colour map of float ``[T, H, W]`` heat
    in [0, 1]."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return ((1 - alpha) * frames.astype(np.float32) + alpha * colours).round().astype(np.uint8)


def reconstruction_rows(
    clip: torch.Tensor,
    mask: torch.Tensor,
    recon: torch.Tensor,
    grid: Sequence[int],
    tubelet: Sequence[int],
    frames: np.ndarray,
) -> list[tuple[str, np.ndarray]]:
    """The rows of a reconstruction figure at the clip frames ``frames`` (int64 ``[F]``):
    the original, the masked input (masked pixels :data:`MASK_COLOUR`) and the
    reconstruction, each ``(label, uint8 [F, H, W, 3])``.

    clip, recon: normalised float ``[3, T, H, W]``; mask: bool ``[N]`` (True = masked).
    """
    original = clip_to_frames(clip)
    masked = masks_panel(original, [mask_pixels(mask, grid, tubelet)])[0]
    return [
        ("original", original[frames]),
        ("masked", masked[frames]),
        ("reconstruction", clip_to_frames(recon)[frames]),
    ]


def grid_size(rows: int, cols: int, legend: bool = False) -> tuple[int, int]:
    """``(width, height)`` in pixels of a :func:`save_grid` figure."""
    return _LEFT + cols * _CELL + _RIGHT, _TOP + rows * _CELL + (_LEGEND if legend else 0)


def tile(rows: Sequence[np.ndarray], gap: int = 1) -> np.ndarray:
    """Rows of frames, each uint8 ``[F, H, W, 3]``, as one image uint8
    ``[R·H + (R-1)·gap, F·W + (F-1)·gap, 3]``, white between the frames."""
    if not rows or len({r.shape for r in rows}) != 1 or rows[0].ndim != 4:
        raise ValueError(f"rows must be uint8 [F, H, W, 3] of one shape, got {[r.shape for r in rows]}")
    F, H, W, _ = rows[0].shape
    out = np.full((len(rows) * (H + gap) - gap, F * (W + gap) - gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for f in range(F):
            out[r * (H + gap) : r * (H + gap) + H, f * (W + gap) : f * (W + gap) + W] = images[f]
    return out


def save_grid(
    rows: Sequence[tuple[str, np.ndarray]],
    frame_numbers: Sequence[int],
    title: str,
    path: str | os.PathLike,
    legend: dict[str, np.ndarray] | None = None,
) -> Path:
    """Draw rows of frames, each ``(label, uint8 [F, H, W, 3])``, one column per frame
    (titled with ``frame_numbers``), into a PNG of :func:`grid_size` pixels; ``legend``
    maps names to RGB colours."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global figure state
    from matplotlib.patches import Patch

    cols = len(frame_numbers)
    if not rows or any(images.shape[0] != cols for _, images in rows):
        raise ValueError(f"every row must hold {cols} frames")
    side = rows[0][1].shape[1]
    gap = max(1, side // 32)  # about 4 screen pixels at any frame size
    image = tile([images for _, images in rows], gap)
    width, height = grid_size(len(rows), cols, legend is not None)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    # One axes for the whole grid, placed to the pixel: far faster than an axes per frame.
    bottom = _LEGEND if legend else 0
    ax = fig.add_axes((_LEFT / width, bottom / height, cols * _CELL / width, len(rows) * _CELL / height))
    ax.imshow(image, interpolation="nearest" if side < _CELL else "antialiased", aspect="auto")
    ax.xaxis.tick_top()
    ax.set_xticks([(side + gap) * c + side / 2 for c in range(cols)], [f"frame {n}" for n in frame_numbers], fontsize=8)
    ax.set_yticks([(side + gap) * r + side / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, fontsize=10)
    if legend:
        fig.legend(
            handles=[Patch(color=np.asarray(rgb) / 255, label=name) for name, rgb in legend.items()],
            loc="lower center",
            ncol=len(legend),
            fontsize=8,
            frameon=False,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
