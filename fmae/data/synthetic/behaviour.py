"""How a synthetic subject moves in a clip: per-frame pose and expression
(:class:`Behaviour`), drawn for an engagement level 0–3 by :func:`sample_behaviour`.

====  ==================================================================================
3     faces and looks at the camera, eyes wide open, blinks normally, upright, leans in
2     mostly at the camera, short glances away, eyes a little lower
1     often looks away or down, droopy eyelids, head tilted, may yawn or close the eyes
0     looks away most of the time (head partly out of frame), eyes half shut or closed
      for long, yawns, head tilted and drooping
====  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

NUM_LEVELS = 4
"""Engagement levels 0–3, DAiSEE's scale."""


class _Level(NamedTuple):
    away: float  # chance that a segment of the clip looks away
    away_yaw: tuple[float, float]  # head turn of a look-away, radians
    out_of_frame: float  # how far a look-away may shift the head sideways
    eye_open: float  # resting eyelid opening, 1 = wide
    long_close: float  # chance of a long eye closure in the clip
    yawn: float  # chance of a yawn in the clip
    roll: tuple[float, float]  # head tilt, radians
    droop: float  # head pitched down, radians
    sway: float  # amplitude of the head's slow sideways sway
    scale: float  # face size: engaged subjects lean in


_LEVELS = (
    _Level(0.65, (0.6, 1.05), 0.35, 0.42, 0.7, 0.6, (0.15, 0.3), 0.22, 0.07, 0.9),
    _Level(0.40, (0.5, 0.9), 0.15, 0.62, 0.3, 0.4, (0.07, 0.17), 0.12, 0.05, 0.95),
    _Level(0.12, (0.3, 0.55), 0.0, 0.85, 0.0, 0.08, (0.0, 0.07), 0.04, 0.03, 1.0),
    _Level(0.0, (0.3, 0.5), 0.0, 1.0, 0.0, 0.0, (0.0, 0.04), 0.0, 0.02, 1.05),
)


@dataclass(frozen=True, eq=False)
class Behaviour:
    """Per-frame pose and expression, each ``float32 [T]``.

    ``yaw`` > 0 turns the face towards the image's right, ``pitch`` > 0 looks down,
    ``roll`` > 0 tilts clockwise; ``dx``/``dy`` move the head (half frame widths),
    ``scale`` sizes it; ``eye_open`` and ``mouth_open`` run from 0 (shut) to 1 (wide);
    ``gaze_x``/``gaze_y`` move the irises within the eyes (-1 … 1).
    """

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    eye_open: np.ndarray
    mouth_open: np.ndarray
    gaze_x: np.ndarray
    gaze_y: np.ndarray


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average with edge padding: turns steps into head movements."""
    if width < 2:
        return x
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, w, mode="valid")


def _bump(t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Raised-cosine pulse: 1 at ``centre``, 0 beyond ``half_width`` frames."""
    z = np.clip((t - centre) / half_width, -1, 1)
    return 0.5 + 0.5 * np.cos(np.pi * z)


def sample_behaviour(level: int, num_frames: int, fps: float, rng: np.random.Generator) -> Behaviour:
    """Draw a clip's motion for engagement ``level`` (0–3)."""
    if not 0 <= level < NUM_LEVELS:
        raise ValueError(f"level must be in [0, {NUM_LEVELS}), got {level}")
    p, T = _LEVELS[level], num_frames
    t = np.arange(T, dtype=np.float64)

    # The clip is cut into segments of about a second; each looks at the camera or away
    # (to a side, or down as at a phone), as a step that _smooth turns into a head turn.
    yaw, pitch, dx = np.zeros(T), np.zeros(T), np.zeros(T)
    gaze_x, gaze_y = rng.normal(0, 0.08, T), rng.normal(0, 0.08, T)
    start = 0
    while start < T:
        stop = min(T, start + int(rng.uniform(0.5, 1.3) * fps) + 1)
        seg = slice(start, stop)
        if rng.random() < p.away:
            side = rng.choice([-1.0, 1.0])
            if rng.random() < 0.7:
                yaw[seg] = side * rng.uniform(*p.away_yaw)
                gaze_x[seg] += side * rng.uniform(0.5, 0.9)
                dx[seg] = side * rng.uniform(0, p.out_of_frame)
            else:
                pitch[seg] = rng.uniform(0.3, 0.5)
                gaze_y[seg] += rng.uniform(0.5, 0.9)
                yaw[seg] = side * rng.uniform(0, 0.2)
        else:
            yaw[seg] = rng.normal(0, 0.05)
            pitch[seg] = rng.normal(0, 0.03)
        start = stop
    turn = max(2, int(0.3 * fps))
    yaw, pitch, dx = _smooth(yaw, turn), _smooth(pitch, turn), _smooth(dx, turn)

    eye_open = np.full(T, np.clip(p.eye_open + rng.normal(0, 0.04), 0.15, 1.0))
    blink = rng.uniform(0, 3.5) * fps  # first blink; then every 2.5–4 s
    while blink < T + fps:
        eye_open *= 1 - 0.95 * _bump(t, blink, max(1.0, 0.12 * fps))
        blink += rng.uniform(2.5, 4.0) * fps
    if rng.random() < p.long_close:
        length = rng.uniform(0.8, 1.6) * fps
        centre = rng.uniform(0, T)
        eye_open *= 1 - 0.93 * np.clip(1.5 * _bump(t, centre, length / 2 + 2), 0, 1)

    mouth_open = np.full(T, 0.02)
    if rng.random() < p.yawn:
        half = rng.uniform(0.6, 1.0) * fps
        env = _bump(t, rng.uniform(0.2 * T, 0.8 * T), half)
        mouth_open = np.maximum(mouth_open, rng.uniform(0.8, 1.0) * env)
        eye_open *= 1 - 0.6 * env
        pitch -= 0.15 * env  # the head tips back

    roll_side = rng.choice([-1.0, 1.0])
    roll = roll_side * rng.uniform(*p.roll) + 0.03 * np.sin(
        2 * np.pi * t / (rng.uniform(3, 6) * fps) + rng.uniform(0, 2 * np.pi)
    )
    pitch += p.droop
    sway = p.sway * np.sin(2 * np.pi * t / (rng.uniform(2, 5) * fps) + rng.uniform(0, 2 * np.pi))
    dx = dx + rng.normal(0, 0.04) + sway
    dy = rng.normal(0.06, 0.03) + 0.25 * pitch + 0.3 * sway**2
    scale = p.scale * rng.uniform(0.97, 1.03) * (1 + 0.01 * np.sin(2 * np.pi * t / (rng.uniform(3, 5) * fps)))

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Behaviour(
        yaw=f32(yaw), pitch=f32(pitch), roll=f32(roll), dx=f32(dx), dy=f32(dy), scale=f32(scale),
        eye_open=f32(np.clip(eye_open, 0, 1)), mouth_open=f32(np.clip(mouth_open, 0, 1)),
        gaze_x=f32(np.clip(gaze_x, -1, 1)), gaze_y=f32(np.clip(gaze_y, -1, 1)),
    )  # fmt: skip
