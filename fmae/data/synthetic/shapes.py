"""Soft-edged 2-D shapes for the renderer: the coverage (0–1) of an ellipse or a convex
polygon on a pixel grid, with a one-pixel soft edge, and a bilinear upsampler."""

from __future__ import annotations

import numpy as np


def ellipse(u: np.ndarray, v: np.ndarray, a, b, px: float) -> np.ndarray:
    """Coverage (0–1) of the ellipse ``(u/a)² + (v/b)² <= 1`` with a one-pixel soft edge.

    ``u``, ``v``: offsets from the centre; ``px``: the pixel size in the same units.
    The signed distance is the first-order estimate ``(1 - q) / |∇q|``.
    """
    ua, vb = u / a, v / b
    q = ua * ua + vb * vb
    grad = 2 * np.sqrt((ua / a) ** 2 + (vb / b) ** 2) + 1e-6
    return np.clip((1 - q) / (grad * px) + 0.5, 0, 1)


def polygon(u: np.ndarray, v: np.ndarray, corners: list[tuple], px: float) -> np.ndarray:
    """Coverage of a convex polygon (corners in either winding) with a soft edge."""
    area2 = sum(corners[i - 1][0] * corners[i][1] - corners[i][0] * corners[i - 1][1] for i in range(len(corners)))
    sign = np.sign(area2)
    dist = None
    for (u0, v0), (u1, v1) in zip(corners, corners[1:] + corners[:1]):
        eu, ev = u1 - u0, v1 - v0
        d = sign * (eu * (v - v0) - ev * (u - u0)) / (np.sqrt(eu * eu + ev * ev) + 1e-9)
        dist = d if dist is None else np.minimum(dist, d)
    return np.clip(dist / px + 0.5, 0, 1)


def upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[k, k, C]`` to ``[size, size, C]``."""
    k = grid.shape[0]
    pos = np.linspace(0, k - 1, size)
    i0 = np.minimum(pos.astype(int), k - 2)
    w = (pos - i0)[:, None, None]
    rows = grid[i0] * (1 - w) + grid[i0 + 1] * w
    w = w[:, 0][None, :, None]
    return rows[:, i0] * (1 - w) + rows[:, i0 + 1] * w
