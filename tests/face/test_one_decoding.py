"""The face pass over one decoding (:func:`fmae.data.face_pass.process_video`, one face on
keyframes: ``_OnePass``) against the two decodings it replaces, and ``keyframes = 1`` against the
pass before issue #22 part 5, rebuilt here from its pieces.

With the first face within the look-ahead the pass decodes the video once and holds a few frames;
where it comes later it decodes twice, as before. Either way it writes the same bytes: the test
forces the two decodings (``LOOKAHEAD_BYTES = 0``) and compares, on made-up videos with a fake
backend (lossless, exact) and on a real one with MediaPipe.
"""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
from test_keyframes import FakeBackend

from fmae.data import face_pass, load_region_maps, region_map_path
from fmae.data.face_pass import PreprocessConfig, process_video
from fmae.data.video_writer import write_video
from fmae.face.keyframes import HAIR_KEYFRAMES
from fmae.face.regions import FaceRegion
from fmae.face.tracking import crop_frame, crop_windows, hold_gaps, smooth, to_crop_coords

H, W = 64, 200
CONFIG = PreprocessConfig(size=32, max_gap=3)
NO = 255  # FakeBackend: no face in a frame whose first pixel is 255


def moving(n: int, start: int = 20, step: int = 3) -> list[int]:
    return [start + step * t for t in range(n)]


SCENES = {
    "face from the first frame": moving(30),
    "face after 7 face-less frames, then a gap beyond max_gap": [NO] * 7 + moving(10) + [NO] * 9 + moving(13, 60, -2),
    "face in the last frames only": [NO] * 12 + moving(3),
    "a jump between keyframes": moving(6) + moving(6, 140, 1),
    "one frame": [40],
    "two frames": [40, 46],
    "three frames": [NO, 40, 46],
    "no face": [NO] * 10,
}


def write_lossless(path, xs: list[int], fps: int = 25) -> None:
    """FakeBackend's video (the face's left edge in pixel (0, 0)) on green noise (its segmentation),
    in lossless FFV1, so that every decoded pixel is the one written."""
    rng = np.random.default_rng(len(xs))
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "bgr0"
        for x in xs:
            f = rng.integers(0, 256, (H, W, 3), np.uint8)
            f[0, 0, 0] = x
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


class Watch:
    """Counts the video's decodings and the most frames ``_OnePass`` held after its first face."""

    def __init__(self, monkeypatch) -> None:
        self.decodings, self.most_held = 0, 0
        watch, video, flush = self, face_pass._Video, face_pass._OnePass.flush

        class CountedVideo(video):
            def __init__(self, path) -> None:
                watch.decodings += 1
                super().__init__(path)

        def watched_flush(one, end: bool = False) -> None:
            flush(one, end)
            if one.first is not None and not one.deferred:
                watch.most_held = max(watch.most_held, len(one.held))

        monkeypatch.setattr(face_pass, "_Video", CountedVideo)
        monkeypatch.setattr(face_pass._OnePass, "flush", watched_flush)


def run(src, out, backend, config) -> tuple[dict, dict]:
    """The record (less its time) and the cache files' bytes of one pass."""
    rec = process_video(src, out, backend, config)
    rec.pop("seconds")
    files = {p.name: p.read_bytes() for p in out.parent.iterdir() if p.name.startswith(out.stem)}
    return rec, files


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("regions", [True, False])
def test_one_decoding_writes_what_two_decodings_write(tmp_path, monkeypatch, scene, regions):
    xs = SCENES[scene]
    src = tmp_path / "src.mkv"
    write_lossless(src, xs)
    config = dataclasses.replace(CONFIG, regions=regions)
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    watch = Watch(monkeypatch)
    one, one_files = run(src, tmp_path / "one" / "crops.avi", FakeBackend(), config)
    assert watch.decodings == 1
    assert watch.most_held <= config.keyframes + config.smooth // 2  # then written; bounded whatever T
    monkeypatch.setattr(face_pass, "LOOKAHEAD_BYTES", 0)  # no look-ahead: the two decodings of before
    watch.decodings = 0
    two, two_files = run(src, tmp_path / "two" / "crops.avi", FakeBackend(), config)
    assert one == two
    assert one_files == two_files
    if scene == "no face":
        assert one["status"] == "no_face" and not one_files and watch.decodings == 1
        assert not list(tmp_path.rglob(".*"))  # no temporary left
    else:
        assert one["status"] == "ok" and watch.decodings == 2 and one["frames"] == len(xs)
        assert sorted(one_files) == (["crops.avi", "crops.regions.npz"] if regions else ["crops.avi"])


def test_hair_is_segmented_on_every_other_keyframe(tmp_path):
    src = tmp_path / "src.mkv"
    write_lossless(src, [50] * 30)  # a face that stays put: no fresh segmentation for a moved window
    backend = FakeBackend()
    assert process_video(src, tmp_path / "crops.avi", backend, CONFIG)["status"] == "ok"
    assert CONFIG.keyframes * HAIR_KEYFRAMES == 8 and backend.segmentations == 4  # crops 0, 8, 16, 24


def test_a_face_beyond_the_look_ahead_is_cropped_from_a_second_decoding(tmp_path, monkeypatch):
    xs = [NO] * 40 + moving(20)
    src = tmp_path / "src.mkv"
    write_lossless(src, xs)
    for name in ("reference", "late"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(face_pass, "LOOKAHEAD_BYTES", 0)
    reference = run(src, tmp_path / "reference" / "crops.avi", FakeBackend(), CONFIG)
    # 20 frames of look-ahead (a decoded frame and its RGB array each): the face comes at frame 40.
    monkeypatch.setattr(face_pass, "LOOKAHEAD_BYTES", 20 * (4 + 3) * H * W)
    watch = Watch(monkeypatch)
    late = run(src, tmp_path / "late" / "crops.avi", FakeBackend(), CONFIG)
    assert watch.decodings == 2 and late == reference and late[0]["status"] == "ok"


# ---------------------------------------------------------------- real video, MediaPipe


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("mediapipe")
    from fmae.face.mediapipe_backend import MediaPipeBackend

    with MediaPipeBackend() as b:
        yield b


def test_one_decoding_writes_what_two_decodings_write_on_a_real_video(real_videos, backend, tmp_path, monkeypatch):
    src = real_videos["single_face.mp4"]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    watch = Watch(monkeypatch)
    one = run(src, tmp_path / "one" / "crops.avi", backend, PreprocessConfig())
    assert watch.decodings == 1 and one[0]["status"] == "ok"
    monkeypatch.setattr(face_pass, "LOOKAHEAD_BYTES", 0)
    assert run(src, tmp_path / "two" / "crops.avi", backend, PreprocessConfig()) == one


def test_keyframes_1_is_the_pass_before(real_videos, backend, tmp_path):
    """``keyframes = 1`` writes what the pass before the keyframes wrote: FaceMesh on every frame,
    the windows of :mod:`fmae.face.tracking`, the one-step area filter, ``backend.parse`` on every
    crop within the gap rule, MJPEG at the config's quality."""
    src, config = real_videos["single_face.mp4"], PreprocessConfig(keyframes=1)
    out = tmp_path / "crops.avi"
    rec = process_video(src, out, backend, config)
    assert rec["status"] == "ok"
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    backend.start_video()
    found = [backend.detect(f) for f in frames]
    boxes = np.stack([d.box if d is not None else np.full(4, np.nan, np.float32) for d in found])
    filled, source = hold_gaps(boxes)
    windows = crop_windows(smooth(filled, config.smooth), frames[0].shape[:2], config.margin)
    S = config.size
    crops = np.stack([crop_frame(f, w, S) for f, w in zip(frames, windows)])
    write_video(tmp_path / "reference.avi", crops, rec["fps"], config.qscale)
    assert out.read_bytes() == (tmp_path / "reference.avi").read_bytes()
    maps = [
        backend.parse(crop, to_crop_coords(found[s].landmarks, w, S))
        if abs(t - s) <= config.max_gap
        else np.full((S, S), FaceRegion.BACKGROUND, np.uint8)
        for t, (crop, w, s) in enumerate(zip(crops, windows, source))
    ]
    assert np.array_equal(load_region_maps(out), np.stack(maps))
    with np.load(region_map_path(out)) as z:
        assert np.array_equal(z["boxes"], windows) and np.array_equal(z["has_face"], [d is not None for d in found])
