"""Preprocessing throughput on the CPU, in source frames per second: one 640×480, 30 fps
clip of 16 frames (a real face photo, moving) through each stage of the pipeline, the
PyAV decode alone being the baseline. Every stage runs in one process on one video, as
each ``--workers`` process does."""

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from fmae.data.face_pass import PreprocessConfig, process_video
from fmae.data.video_writer import write_video

pytest.importorskip("mediapipe")
from fmae.face.mediapipe_backend import MediaPipeBackend  # noqa: E402

T, H, W, FPS = 16, 480, 640, 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from matplotlib import cbook

    photo = np.asarray(
        Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").resize((300, 350))
    )
    frames = np.stack(
        [
            cv2.warpAffine(
                photo, np.float32([[1, 0, 150 + 4 * t], [0, 1, 60 + 2 * t]]), (W, H), borderValue=(110, 120, 135)
            )
            for t in range(T)
        ]
    )
    path = tmp_path_factory.mktemp("bench") / "face.avi"
    write_video(path, frames, FPS)
    return path


def _decode(path):
    with av.open(str(path)) as c:
        return sum(1 for f in c.decode(video=0) if f.to_ndarray(format="rgb24") is not None)


def _detect(backend):
    def run(path):
        backend.start_video()
        with av.open(str(path)) as c:
            return sum(backend.detect(f.to_ndarray(format="rgb24")) is not None for f in c.decode(video=0))

    return run


def _pipeline(backend, out):
    def run(path):
        rec = process_video(path, out / "face.avi", backend, PreprocessConfig())
        assert rec["status"] == "ok", rec
        return rec["frames"]

    return run


@pytest.mark.parametrize("impl", ["pyav_decode", "decode+facemesh", "pipeline_no_hair", "pipeline"])
def test_preprocess_frames_per_second(benchmark, measure, clip, tmp_path, impl):
    benchmark.group = f"preprocess {W}x{H} {T} frames -> 224^2 (1 process)"
    backend = None
    if impl == "pyav_decode":
        fn = _decode
    else:
        backend = MediaPipeBackend(hair=impl == "pipeline")
        fn = _detect(backend) if impl == "decode+facemesh" else _pipeline(backend, tmp_path)
    try:
        frames = measure(lambda: fn(clip), impl=impl, baseline=impl == "pyav_decode")
    finally:
        if backend is not None:
            backend.close()
    assert frames == T
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["frames_per_s"] = round(T / benchmark.stats.stats.min, 1)
