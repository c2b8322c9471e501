"""``python -m fmae.predict --faces all``: a timeline per person, joinable with ``tracks.csv``, on the
gallery recordings of ``tests/gallery_videos.py`` (two real portraits swapping places while one is
away; the real meeting gallery), and the recorded statuses: no one seen, more people than
``--max-faces``."""

import csv
import json

import numpy as np
import pytest
from gallery_videos import PAIR_AWAY, meeting, noise, two_faces, write
from PIL import Image
from predict_helpers import CLASSES, random_probe

from fmae.data.people import TRACKS, read_tracks
from fmae.data.video_writer import write_video
from fmae.downstream.predict import NO_FACE, PredictConfig, timeline_columns
from fmae.downstream.windows import Faces, frame_at, thumbnail, window_clips
from fmae.predict import main

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

FRAMES, STRIDE, FPS = 4, 2, 12  # random_probe's clips: a window is 8 source frames, a new one every 4 (half a window)
SPAN = FRAMES * STRIDE
CPU = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A random-init tiny encoder and a random 4-class probe on it: the test checks who gets which
    windows, not what the probe says."""
    return random_probe(tmp_path_factory.mktemp("predictor"), CLASSES)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Grace Hopper and the astronaut, 24 frames at 12 fps, swapping halves at frame 12, the
    astronaut away in frames 4-8 (``gallery_videos.two_faces``)."""
    path = tmp_path_factory.mktemp("pair") / "two.avi"
    write_video(path, two_faces()[0], FPS)
    return path


def _predict(video, probe, out, *extra) -> dict:
    assert main([str(video), "--probe", probe, "--out-dir", str(out), "--faces", "all", *CPU, *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _by_person(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["person"], []).append(r)
    return out


def _check_joins_tracks(out, summary: dict, fps: float) -> dict[str, list[dict]]:
    """The timeline's people are tracks.csv's and summary.json's, and each window's face_fraction is
    the share of its frames in which tracks.csv has that person. Returns the rows per person."""
    rows = _rows(out / "timeline.csv")
    assert list(rows[0]) == [*timeline_columns("classification", CLASSES), "person"]
    people = _by_person(rows)
    tracks = read_tracks(out / TRACKS)
    names = [p["person"] for p in summary["persons"]]
    assert list(people) == names and set(tracks["person"]) == set(names) and len(names) == summary["people"]
    for person in summary["persons"]:
        mine = people[person["person"]]
        seen = tracks["frame"][tracks["person"] == person["person"]]
        assert person["frames_with_face"] == len(seen) and person["windows"] == len(mine)
        for r in mine:
            start = round(float(r["start_s"]) * fps)
            inside = ((seen >= start) & (seen < start + SPAN)).sum()
            assert float(r["face_fraction"]) == pytest.approx(inside / SPAN, abs=1e-3), (person["person"], r)
            assert (r["level"] == NO_FACE) == (float(r["face_fraction"]) < 0.5)
            assert r["level"] == NO_FACE or r["level"] in CLASSES
    starts = {p: [r["start_s"] for r in mine] for p, mine in people.items()}
    assert len({tuple(s) for s in starts.values()}) == 1  # every person has the recording's windows
    return people


def test_every_person_gets_a_timeline_that_joins_tracks_csv(probe, pair, tmp_path, capsys):
    out = tmp_path / "out"
    summary = _predict(pair, probe, out, "--min-track", "0.25")
    printed = capsys.readouterr().out
    assert "2 people (ok)" in printed and "person-01: a face in" in printed and "tracks.csv" in printed

    assert summary["status"] == "ok" and summary["people"] == 2 and summary["tracks"] == TRACKS
    assert summary["frames"] == 24 and summary["fps"] == FPS
    people = _check_joins_tracks(out, summary, FPS)
    # 24 frames, windows of 8 every 4: five windows each.
    assert {p: len(rows) for p, rows in people.items()} == {"person-00": 5, "person-01": 5}
    # Hopper (person-00) is always there; the astronaut (person-01) is away in frames 4-8: half of
    # window 0, five of window 1's eight frames (so it is no_face), one of window 2's.
    assert [float(r["face_fraction"]) for r in people["person-00"]] == [1.0] * 5
    assert [float(r["face_fraction"]) for r in people["person-01"]] == pytest.approx([0.5, 0.375, 0.875, 1, 1])
    assert list(PAIR_AWAY) == [4, 5, 6, 7, 8]
    assert [r["level"] == NO_FACE for r in people["person-01"]] == [False, True, False, False, False]
    assert [p["no_face_windows"] for p in summary["persons"]] == [0, 1]

    # One plot row per person: the figure is 0.6 + 2.2 inches per row tall, at 110 dpi.
    with Image.open(out / "timeline.png") as png:
        assert png.height == round((0.6 + 2.2 * 2) * 110)
    assert (out / "report.html").is_file()


def test_more_people_than_max_faces_is_a_recorded_status(probe, pair, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / TRACKS).write_text("left by an earlier run\n")
    summary = _predict(pair, probe, out, "--min-track", "0.25", "--max-faces", "1")
    assert "too_many_faces" in capsys.readouterr().out
    assert summary["status"] == "too_many_faces" and "more than max_faces 1" in summary["message"]
    assert summary["people"] == 0 and summary["persons"] == [] and summary["tracks"] is None
    assert summary["frames"] == 24
    assert _rows(out / "timeline.csv") == []  # the header alone
    assert not (out / TRACKS).exists()  # an earlier run's would pass for this one's
    assert 'data-status="too_many_faces"' in (out / "report.html").read_text()
    with Image.open(out / "timeline.png") as png:
        png.verify()


def test_no_one_seen_is_a_recorded_status(probe, tmp_path):
    write_video(tmp_path / "wall.avi", noise(24), FPS)
    summary = _predict(tmp_path / "wall.avi", probe, tmp_path / "out")
    assert summary["status"] == "no_face" and summary["persons"] == [] and summary["frames"] == 24
    assert 'data-status="no_face"' in (tmp_path / "out" / "report.html").read_text()


def test_a_thumbnail_is_the_middle_face_frame(tmp_path):
    # Found by seeking: the frame it names, not a neighbour (each frame is marked by its index).
    frames = np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    frames[:, :16] = np.arange(60, dtype=np.uint8)[:, None, None, None] * 4
    write_video(tmp_path / "crops.avi", frames, FPS)
    has_face = np.zeros(60, bool)
    has_face[[3, 20, 41, 42, 57]] = True
    got = thumbnail(Faces(tmp_path / "crops.avi", has_face, FPS))
    np.testing.assert_array_equal(got, frame_at(tmp_path / "crops.avi", 41))
    assert abs(float(got[:16].mean()) - 41 * 4) < 3  # MJPEG's loss aside
    (want,) = window_clips(tmp_path / "crops.avi", np.array([41]), np.zeros(1, np.int64))
    np.testing.assert_array_equal(got, want[0])  # as decoding from the start gives it
    assert thumbnail(Faces(tmp_path / "crops.avi", np.zeros(60, bool), FPS)) is None
    assert thumbnail(Faces(None, np.zeros(60, bool), FPS)) is None


def test_people_settings_are_checked():
    with pytest.raises(ValueError, match="faces must be one of"):
        PredictConfig(faces="some")
    with pytest.raises(ValueError, match="max_faces"):
        PredictConfig(faces="all", max_faces=0)


@pytest.mark.slow
def test_the_meeting_gallery_gets_a_timeline_per_person(probe, real_videos, tmp_path):
    """Real faces (``gallery_videos.meeting``, 2×2 tiles): four people, the woman's camera off in
    frames 72-108, the man away in frames 48-120, two tiles swapping at 144. Each person's timeline
    must be theirs: the windows in which their true self is gone are no_face."""
    gallery = meeting(real_videos, cells=2)
    fps = 24
    summary = _predict(write(tmp_path / "meeting.mp4", gallery), probe, tmp_path / "out", "--hop", str(SPAN / fps))
    assert summary["status"] == "ok" and summary["people"] == 4
    people = _check_joins_tracks(tmp_path / "out", summary, fps)

    # Who each predicted person truly is: the true person of most of their rows in tracks.csv.
    tracks = read_tracks(tmp_path / "out" / TRACKS)
    truth = {}
    for name in people:
        rows = np.flatnonzero(tracks["person"] == name)
        who = [
            gallery.person_at(int(tracks["frame"][i]), [tracks[k][i] for k in ("x0", "y0", "x1", "y1")]) for i in rows
        ]
        truth[name] = max(set(who), key=who.count)
    assert sorted(truth.values()) == [0, 1, 2, 3]  # four people, none split or merged
    present = (gallery.layout[:, :, None] == np.arange(4)).any(1)  # [T, person]: shown somewhere
    for name, rows in people.items():
        for r in rows:
            start = round(float(r["start_s"]) * fps)
            if not present[start : start + SPAN, truth[name]].any():  # gone for the whole window
                assert r["level"] == NO_FACE and float(r["face_fraction"]) == 0, (name, r)
    # The man is away for 3 s: his timeline has no_face windows, the stills' have none.
    by_truth = {truth[p["person"]]: p for p in summary["persons"]}
    assert by_truth[1]["no_face_windows"] >= 6
    assert by_truth[3]["no_face_windows"] == 0
