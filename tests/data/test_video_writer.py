"""fmae.data.video_writer: MJPEG AVIs written frame by frame read back with their frames,
frame rate and size."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from fmae.data.clips import read_frames, rgb_array
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


@pytest.mark.parametrize("codec,pix_fmt", [("mjpeg", "yuvj420p"), ("mjpeg", "yuvj444p"), ("libx264", "yuv420p")])
def test_rgb_array_gives_pyavs_bytes_for_any_size_and_format(tmp_path, codec, pix_fmt):
    """The shared swscale context against PyAV's own per-frame one: fresh noise frames of
    changing sizes (odd where the format allows), one thread, so the context is reused and
    rebuilt."""
    rng = np.random.default_rng(7)
    frames = []
    for size, (h, w) in enumerate([(23, 37), (23, 37), (64, 50), (112, 112)]):
        if pix_fmt.endswith("420p"):  # chroma at half size: even sides only
            h, w = h + h % 2, w + w % 2
        path = tmp_path / f"{codec}-{pix_fmt}-{size}.mkv"
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=15)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            for _ in range(3):
                picture = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            out.mux(stream.encode())
        with av.open(str(path)) as video:
            frames += list(video.decode(video=0))
    assert {f.format.name for f in frames} == {pix_fmt} and len({(f.width, f.height) for f in frames}) == 3
    for frame in frames:
        np.testing.assert_array_equal(rgb_array(frame), frame.to_ndarray(format="rgb24"))
