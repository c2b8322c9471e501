"""render_segments: one subject whose engagement changes in known segments."""

import numpy as np
import pytest

from fmae.data.synthetic import render_segments
from fmae.face import FaceRegion


def test_frames_and_levels_follow_the_segments():
    video = render_segments([3, 0, 2], seconds_per_segment=1.0, size=32, seed=1, fps=10)
    assert video.rendered.frames.shape == (30, 32, 32, 3) and video.rendered.frames.dtype == np.uint8
    assert video.rendered.regions.shape == (30, 32, 32)
    assert video.levels.dtype == np.int64
    assert video.levels.tolist() == [3] * 10 + [0] * 10 + [2] * 10
    assert video.fps == 10


def test_engaged_segments_show_more_eye_than_disengaged_ones():
    # Level 3 faces the camera with open eyes; level 0 turns away (eyes foreshortened) and
    # sits further back: the ground-truth eye area tells the segments apart, per segment.
    video = render_segments([3, 0, 3], seconds_per_segment=2.0, size=48, seed=3)
    eye = np.isin(video.rendered.regions, [FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE]).mean((1, 2))
    first, middle, last = eye.reshape(3, -1).mean(1)
    assert first > 1.3 * middle and last > 1.3 * middle


def test_same_seed_same_video_other_seed_other_subject():
    a = render_segments([1, 2], 0.5, size=32, seed=5)
    b = render_segments([1, 2], 0.5, size=32, seed=5)
    c = render_segments([1, 2], 0.5, size=32, seed=6)
    np.testing.assert_array_equal(a.rendered.frames, b.rendered.frames)
    assert np.abs(a.rendered.frames.astype(int) - c.rendered.frames.astype(int)).mean() > 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=[]), "at least one segment"),
        (dict(levels=[4]), "levels must be in"),
        (dict(levels=[-1, 2]), "levels must be in"),
        (dict(levels=[1], seconds_per_segment=0.01), "less than one frame"),
        (dict(levels=[1], size=33), "size must be even"),
        (dict(levels=[1], fps=0), "fps must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(seconds_per_segment=1.0, size=32) | kwargs
    with pytest.raises(ValueError, match=message):
        render_segments(**args)
