"""The dynamics set's motion (:func:`sample_dynamics`): a clip's level sets only how fast
the eyelids, gaze and mouth move, never what any single frame looks like."""

from __future__ import annotations

import numpy as np

from fmae.data.synthetic.behaviour import Behaviour

DYNAMICS_VERSION = 2
"""Part of the dynamics set's cache key (:meth:`fmae.data.synthetic.SyntheticConfig.digest`):
bump it whenever :func:`sample_dynamics` changes."""
DYNAMICS_WIDTHS_S: tuple[float, ...] = (0.2, 0.4, 0.8, 1.6)
"""Level ``k``'s time scale in seconds (the dynamics set): the width of the window that
smooths the eyelid, gaze and mouth processes. Level 0 is restless (blinks, glances and
mouth movements come about eight times as often as at level 3), level 3 is steady."""
DYNAMICS_HEAD_WIDTHS_S: tuple[float, float] = (0.8, 1.6)
"""Range (log-uniform) of the head sway's time scale, the same for every level: the head
drifts slowly at every level, so how much the whole image changes says little about the
level (a head sway as fast as the fast levels hides their faces' motion even from a probe
told where the eyes and mouth are)."""
DYNAMICS_SWAY = 0.5
"""Amplitude of the head sway (1: about ±6° of yaw and a pixel or two of drift at 64²)."""


def smoothing_taps(width: int) -> np.ndarray:
    """A Hann window of ``width`` taps scaled to unit L2 norm: white N(0, 1) noise filtered
    with it is N(0, 1) in every frame, whatever the width."""
    w = np.hanning(width + 2)[1:-1]
    return w / np.sqrt(np.sum(w * w))


def unit_process(noise: np.ndarray, width: int, num_frames: int) -> np.ndarray:
    """``[..., num_frames]`` stationary Gaussian process with an N(0, 1) marginal in every
    frame and a time scale of ``width`` frames: the last ``num_frames + width - 1`` samples
    of ``noise`` (white, N(0, 1), ``[..., L]``) filtered with :func:`smoothing_taps`
    (``valid`` convolution: every frame sees a full window)."""
    taps = smoothing_taps(width)
    tail = noise[..., noise.shape[-1] - (num_frames + width - 1) :]
    return np.apply_along_axis(lambda x: np.convolve(x, taps, mode="valid"), -1, tail)


def sample_dynamics(
    level: int, num_frames: int, fps: float, pose_rng: np.random.Generator, face_rng: np.random.Generator
) -> Behaviour:
    """A clip's motion for tempo ``level`` (0–3) of the dynamics set.

    The level sets one thing: the time scale (:data:`DYNAMICS_WIDTHS_S`) of four facial
    processes, each an N(0, 1) Gaussian process (:func:`unit_process`) mapped through a
    fixed function that does not depend on the level:

    - eyelids: they open wide where the eyelid process is low and shut where it passes 1.3
      (about 10 % of the frames), squinting in between, times a resting opening;
    - gaze: the irises follow two processes sideways and up/down;
    - mouth: it opens (as in speaking) where its process passes -0.5.

    So every frame's eyelid, gaze and mouth values have the same distribution at every
    level (and so do time averages); only how fast they change differs: short blinks and
    darting glances at level 0, slow closures and drifts at level 3. The head's pose,
    place, size and slow sway, and the resting eyelid opening, come from ``pose_rng`` and do
    not depend on the level; the sway's time scale is drawn from
    :data:`DYNAMICS_HEAD_WIDTHS_S` at every level. Both generators are consumed the same way
    at every level.
    """
    if not 0 <= level < len(DYNAMICS_WIDTHS_S):
        raise ValueError(f"level must be in [0, {len(DYNAMICS_WIDTHS_S)}), got {level}")
    T = num_frames
    widest = max(2, round(max(DYNAMICS_WIDTHS_S + DYNAMICS_HEAD_WIDTHS_S) * fps))

    # Pose: a static offset per clip plus a slow sway, none of it tied to the level.
    lo, hi = (np.log(max(1.0, s * fps)) for s in DYNAMICS_HEAD_WIDTHS_S)
    head_width = int(round(np.exp(pose_rng.uniform(lo, hi))))
    sway = unit_process(pose_rng.standard_normal((5, T + widest - 1)), max(1, head_width), T)
    a = DYNAMICS_SWAY
    yaw = pose_rng.uniform(-0.15, 0.15) + 0.1 * a * sway[0]
    pitch = pose_rng.uniform(-0.08, 0.08) + 0.05 * a * sway[1]
    roll = pose_rng.uniform(-0.1, 0.1) + 0.03 * a * sway[2]
    # Framed like a face crop (the face fills most of the frame), at a place and size of its own.
    dx = pose_rng.uniform(-0.12, 0.12) + 0.03 * a * sway[3]
    dy = pose_rng.uniform(-0.08, 0.06) + 0.02 * a * sway[4]
    scale = pose_rng.uniform(1.1, 1.35) * np.ones(T)
    rest = pose_rng.uniform(0.75, 1.0)

    # Face: the level's time scale, the same per-frame distribution at every level.
    width = max(1, round(DYNAMICS_WIDTHS_S[level] * fps))
    blink, gx, gy, mouth = unit_process(face_rng.standard_normal((4, T + widest - 1)), width, T)
    eye_open = rest * np.clip(1 - 0.5 * (blink + 0.6), 0.05, 1)
    mouth_open = np.clip(0.3 * (mouth + 0.5), 0, 1)

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Behaviour(
        yaw=f32(yaw),
        pitch=f32(pitch),
        roll=f32(roll),
        dx=f32(dx),
        dy=f32(dy),
        scale=f32(scale),
        eye_open=f32(eye_open),
        mouth_open=f32(mouth_open),
        gaze_x=f32(np.clip(0.8 * gx, -1, 1)),
        gaze_y=f32(np.clip(0.6 * gy, -1, 1)),
    )
