"""One clip of the set, or one long video of changing engagement, from seeds to pixels:
the look, the motion and the drawing of :func:`generate_clip` and :func:`render_segments`.

Each clip draws from generators seeded by the config's seed and its indices (``0``: the
subject's look, ``1``: the motion and the drawing's light and noise, ``3``/``4``: the
dynamics set's pose and face), so a clip is the same whatever else is generated.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from fmae.data.synthetic.appearance import sample_appearance
from fmae.data.synthetic.behaviour import NUM_LEVELS, Behaviour, sample_behaviour
from fmae.data.synthetic.config import SyntheticConfig, clip_id, subject_id
from fmae.data.synthetic.dynamics import sample_dynamics
from fmae.data.synthetic.render import RenderedClip, render_clip


class GeneratedClip(NamedTuple):
    """One clip of the set: its ids, split, engagement level, motion and drawing."""

    subject_id: str
    clip_id: str
    split: str
    engagement: int
    behaviour: Behaviour
    rendered: RenderedClip


def generate_clip(config: SyntheticConfig, subject: int, clip: int) -> GeneratedClip:
    """Clip ``clip`` of subject ``subject``, the same for the same config on any machine
    with the same numpy."""
    if not (0 <= subject < config.num_subjects and 0 <= clip < config.clips_per_subject):
        raise IndexError(
            f"no clip ({subject}, {clip}) in {config.num_subjects} subjects × {config.clips_per_subject} clips"
        )
    look = sample_appearance(np.random.default_rng([config.seed, 0, subject]))
    rng = np.random.default_rng([config.seed, 1, subject, clip])
    level = config.engagement(subject, clip)
    if config.dynamics:  # pose and face motion from streams of their own: rng (light, noise) never sees the level
        motion = sample_dynamics(
            level,
            config.num_frames,
            config.fps,
            np.random.default_rng([config.seed, 3, subject, clip]),
            np.random.default_rng([config.seed, 4, subject, clip]),
        )
    else:
        motion = sample_behaviour(level, config.num_frames, config.fps, rng)
    rendered = render_clip(look, motion, config.size, rng)
    split = config.subject_splits()[subject]
    return GeneratedClip(subject_id(subject), clip_id(subject, clip), split, level, motion, rendered)


class SegmentedVideo(NamedTuple):
    """One subject whose engagement changes in known segments (:func:`render_segments`)."""

    rendered: RenderedClip
    levels: np.ndarray
    """``int64 [T]``: the engagement level acted out in each frame."""
    fps: int


def render_segments(
    levels: Sequence[int], seconds_per_segment: float, size: int = 112, seed: int = 0, fps: int = 15
) -> SegmentedVideo:
    """One long video of one subject acting out engagement ``levels[0]``, then ``levels[1]``, …,
    each for ``seconds_per_segment`` seconds (rounded to whole frames): a recording whose
    ground truth over time is known, for :mod:`fmae.predict` and its tests.

    Each segment's motion is drawn with :func:`sample_behaviour` for its level; the whole
    video is drawn in one :func:`render_clip`, so the look, light and noise stay the same
    across segment borders and only the behaviour changes. The same arguments give the
    same video (on the same numpy).
    """
    if not levels:
        raise ValueError("levels must name at least one segment")
    if any(not 0 <= int(level) < NUM_LEVELS for level in levels):
        raise ValueError(f"levels must be in [0, {NUM_LEVELS}), got {list(levels)}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    frames_per_segment = round(seconds_per_segment * fps)
    if frames_per_segment < 1:
        raise ValueError(f"seconds_per_segment {seconds_per_segment} at {fps} fps is less than one frame")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16 (4:2:0 video), got {size}")
    look = sample_appearance(np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    parts = [sample_behaviour(int(level), frames_per_segment, fps, rng) for level in levels]
    motion = Behaviour(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Behaviour)}
    )
    per_frame = np.repeat(np.asarray(levels, np.int64), frames_per_segment)
    return SegmentedVideo(render_clip(look, motion, size, rng), per_frame, fps)
