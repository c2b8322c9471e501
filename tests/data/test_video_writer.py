"""fmae.data.video_writer: MJPEG AVIs written frame by frame read back with their frames,
frame rate and size."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from fmae.data.clips import read_frames
from fmae.data.video_writer import VideoWriter, write_video


def test_frames_and_rate_read_back(tmp_path):
    rng = np.random.default_rng(0)
    # Flat 8×8 blocks (JPEG's blocks: it keeps them within a few levels), 30000/1001 fps.
    base = rng.integers(30, 220, (11, 3, 5, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(base, 8, 1), 8, 2)  # [11, 24, 40, 3]
    path = tmp_path / "v.avi"
    with VideoWriter(path, 30000 / 1001, frames.shape[1:3], qscale=2) as writer:
        for rgb in frames:
            writer.write(rgb)
    assert writer.frames == 11
    got = read_frames(path, np.arange(11))
    assert got.shape == frames.shape
    assert np.abs(got.astype(int) - frames).mean() < 4
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
    write_video(tmp_path / "w.avi", frames, 30000 / 1001, qscale=2)
    assert (tmp_path / "w.avi").read_bytes() == path.read_bytes()


def test_bad_frames_and_qscale_are_errors(tmp_path):
    with pytest.raises(ValueError, match="qscale"):
        VideoWriter(tmp_path / "q.avi", 15, (16, 16), qscale=1)
    with VideoWriter(tmp_path / "v.avi", 15, (16, 16)) as writer:
        with pytest.raises(ValueError, match=r"uint8 \[16, 16, 3\]"):
            writer.write(np.zeros((16, 16, 3), np.float32))
        with pytest.raises(ValueError, match=r"uint8 \[16, 16, 3\]"):
            writer.write(np.zeros((16, 8, 3), np.uint8))
        writer.write(np.zeros((16, 16, 3), np.uint8))
