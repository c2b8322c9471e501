"""Writing face videos: MJPEG in an AVI, the format of the clip cache.

MJPEG keeps every frame a key frame, so a clip's frames decode without their
neighbours (PyAV seeks, DALI's CPU decoder reads it), at a size set by the JPEG
quantiser ``qscale`` (2 best … 31 worst).
"""

from __future__ import annotations

import os
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

MIN_FPS = 0.001
MAX_FPS = 1000.0
"""The frame rates this writer's AVIs hold: above 1000 fps FFmpeg's AVI muxer refuses the
frames (``Invalid argument``, within a few frames), and below 1/1000 fps the rate rounds to
zero at a denominator of at most 1001 (the writer's, to keep 30000/1001 exact)."""


class VideoWriter:
    """Streams ``uint8 [H, W, 3]`` RGB frames into an MJPEG ``.avi`` at ``path``; memory
    holds one frame, whatever the video's length. Use it in a ``with`` block."""

    def __init__(self, path: str | os.PathLike, fps: float, hw: tuple[int, int], qscale: int = 3) -> None:
        if not 2 <= qscale <= 31:
            raise ValueError(f"qscale must be in [2, 31], got {qscale}")
        if not MIN_FPS <= fps <= MAX_FPS:
            raise ValueError(f"an AVI holds {MIN_FPS:g} to {MAX_FPS:g} frames per second, got {float(fps):g}")
        self.hw = (int(hw[0]), int(hw[1]))
        self._container = av.open(str(path), "w", format="avi")
        self._stream = self._container.add_stream("mjpeg", rate=Fraction(fps).limit_denominator(1001))
        self._stream.height, self._stream.width = self.hw
        self._stream.pix_fmt = "yuvj420p"
        self._stream.options = {"qmin": str(qscale), "qmax": str(qscale)}
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``uint8 [H, W, 3]`` frame."""
        if rgb.dtype != np.uint8 or rgb.shape != (*self.hw, 3):
            raise ValueError(f"frames must be uint8 [{self.hw[0]}, {self.hw[1]}, 3], got {rgb.dtype} {rgb.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        self._container.mux(self._stream.encode(None))
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self._container.close()  # a broken file: the caller's atomic writer throws it away


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, qscale: int = 3) -> None:
    """Write ``uint8 [T, H, W, 3]`` RGB frames as MJPEG in an AVI."""
    with VideoWriter(path, fps, frames.shape[1:3], qscale) as writer:
        for rgb in frames:
            writer.write(rgb)
