"""The dynamics set the evidence experiment (:mod:`fmae.experiments.evidence`) probes on.

Its levels must be out of reach of static statistics by construction: the level changes only
how fast the face moves, never the look, pose, light or any frame's distribution.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from scipy import stats

from fmae.data import SyntheticConfig
from fmae.data.synthetic import (
    DYNAMICS_WIDTHS_S,
    generate_clip,
    sample_dynamics,
    smoothing_taps,
    unit_process,
)
from fmae.face import FaceRegion

POSE = ("yaw", "pitch", "roll", "dx", "dy", "scale")
FACE = ("eye_open", "gaze_x", "gaze_y", "mouth_open")


def test_the_default_set_is_unchanged_by_the_dynamics_option():
    # Pinned before the option existed: the default set's digest (its cache folder) and pixels.
    assert SyntheticConfig().digest() == "e189ecdc62e9"
    small = SyntheticConfig(size=32, num_frames=12, num_subjects=2, clips_per_subject=2)
    assert small.digest() == "b6646fc9beb7"
    h = hashlib.sha256()
    for s in range(2):
        for c in range(2):
            g = generate_clip(small, s, c)
            h.update(g.rendered.frames.tobytes())
            h.update(g.rendered.regions.tobytes())
    assert h.hexdigest() == "84360f88b665a2fb9dd7f213e412cf0edd91ca4dffc5a1439996098d044d7033"
    assert dataclasses.replace(small, dynamics=True).digest() != small.digest()


def test_the_level_never_touches_pose_look_or_the_random_streams():
    draws = []
    for level in range(len(DYNAMICS_WIDTHS_S)):
        pose_rng, face_rng = np.random.default_rng(7), np.random.default_rng(8)
        motion = sample_dynamics(level, 48, 15, pose_rng, face_rng)
        # Both generators are consumed alike at every level: what is drawn after them does not move.
        draws.append((motion, pose_rng.random(), face_rng.random()))
    first = draws[0][0]
    for motion, after_pose, after_face in draws[1:]:
        assert after_pose == draws[0][1] and after_face == draws[0][2]
        for name in POSE:
            np.testing.assert_array_equal(getattr(motion, name), getattr(first, name))
        assert any(not np.array_equal(getattr(motion, n), getattr(first, n)) for n in FACE)


def test_every_frame_has_the_same_distribution_at_every_level():
    for level, seconds in enumerate(DYNAMICS_WIDTHS_S):
        taps = smoothing_taps(max(1, round(seconds * 15)))
        assert np.isclose(np.sum(taps**2), 1.0)  # unit norm: filtered N(0, 1) noise stays N(0, 1)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4000, 60))
    frame = {w: unit_process(noise, w, 8)[:, 4] for w in (3, 24)}
    for values in frame.values():
        assert abs(values.mean()) < 0.06 and abs(values.std() - 1) < 0.05
    # The facial values of one frame, over many clips: level 0 and level 3 are the same distribution.
    samples = {
        level: np.array(
            [
                [
                    getattr(
                        sample_dynamics(
                            level, 24, 15, np.random.default_rng([level, i]), np.random.default_rng([level, i, 1])
                        ),
                        n,
                    )[12]
                    for n in FACE
                ]
                for i in range(300)
            ]
        )
        for level in (0, 3)
    }
    for k, name in enumerate(FACE):
        assert stats.ks_2samp(samples[0][:, k], samples[3][:, k]).pvalue > 1e-3, name
    with pytest.raises(ValueError, match="level"):
        sample_dynamics(4, 8, 15, np.random.default_rng(0), np.random.default_rng(0))


def test_a_clip_at_another_level_differs_only_in_the_face(monkeypatch):
    config = SyntheticConfig(size=48, num_frames=16, num_subjects=2, clips_per_subject=1, dynamics=True)
    clips = {}
    for level in (0, 3):
        monkeypatch.setattr(SyntheticConfig, "engagement", lambda self, s, c, level=level: level)
        clips[level] = generate_clip(config, 1, 0)
    a, b = clips[0].rendered, clips[3].rendered
    assert clips[0].engagement == 0 and clips[3].engagement == 3
    outside = np.isin(a.regions, (FaceRegion.HAIR, FaceRegion.BACKGROUND)) & (a.regions == b.regions)
    assert outside.mean() > 0.3
    np.testing.assert_array_equal(a.frames[outside], b.frames[outside])  # look, place, light and noise: identical
    assert not np.array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.boxes, b.boxes)  # the head is where it was, as large
