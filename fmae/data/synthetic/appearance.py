"""A synthetic subject's look: skin, hair, eyes, lips, clothes, head shape and backdrop
(:class:`Appearance`), drawn once per subject by :func:`sample_appearance`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 165], [224, 172, 130], [198, 134, 96], [161, 102, 70], [120, 76, 52], [88, 57, 40]],
    np.float32,
)
_HAIR_COLOURS = np.array(
    [[25, 20, 18], [60, 40, 28], [105, 70, 40], [190, 150, 90], [150, 60, 30], [150, 150, 150]], np.float32
)
_IRIS_COLOURS = np.array([[60, 35, 20], [100, 70, 40], [60, 100, 140], [70, 110, 70]], np.float32)
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bob", "curly", "bun")
BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "window")


@dataclass(frozen=True, eq=False)
class Appearance:
    """One subject's look. Colours are ``float32 [3]`` RGB in 0–255; lengths are in
    half frame widths (the frame spans [-1, 1] on both axes)."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    hair_style: str
    head: tuple[float, float]  # half width, half height of the head ellipse
    forehead: float  # hairline height above the head centre, in head half heights
    parting: float  # slope of the hairline: a side parting
    curl_phase: float  # where the curls of curly hair fall
    background: str
    background_colours: np.ndarray  # float32 [2, 3]
    background_seed: int


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a subject's look."""

    def jitter(colour: np.ndarray, amount: float) -> np.ndarray:
        return np.clip(colour + rng.normal(0, amount, 3), 0, 255).astype(np.float32)

    skin = jitter(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], 6)
    lips = np.clip(0.65 * skin + 0.35 * np.array([170, 60, 70]), 0, 255).astype(np.float32)
    return Appearance(
        skin=skin,
        hair=jitter(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 8),
        iris=jitter(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 8),
        lips=lips,
        clothes=rng.uniform(30, 220, 3).astype(np.float32),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        head=(float(rng.uniform(0.54, 0.62)), float(rng.uniform(0.72, 0.8))),
        forehead=float(rng.uniform(0.4, 0.62)),
        parting=float(rng.uniform(-0.25, 0.25)),
        curl_phase=float(rng.uniform(0, 2 * np.pi)),
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        background_colours=rng.uniform(40, 230, (2, 3)).astype(np.float32),
        background_seed=int(rng.integers(2**31)),
    )
