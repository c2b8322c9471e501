"""``python -m fmae.preprocess --faces all``: every person's crops, region maps, manifest rows and
``tracks.csv``, on a two-face video made of two real portraits that swap places while one leaves
for a while (``gallery_videos.two_faces``), on bad input, on reruns, and on the real meeting
gallery (``tests/gallery_videos.py``) for the identities.
"""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from gallery_videos import PAIR_AWAY as AWAY
from gallery_videos import PAIR_SWAP as SWAP
from gallery_videos import PAIR_T as T
from gallery_videos import PAIR_W as W
from gallery_videos import assess, meeting, noise, two_faces, write

from fmae.data import load_region_maps, read_frames
from fmae.data.face_pass import PreprocessConfig
from fmae.data.people import TRACK_COLUMNS, read_tracks
from fmae.data.preprocess import preprocess, read_manifest, read_people
from fmae.data.video_writer import write_video
from fmae.face.mediapipe_backend import MediaPipeBackend
from fmae.preprocess import main

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

SIZE = 64
ARGS = ["--faces", "all", "--size", str(SIZE), "--min-track", "0.25", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two faces, one face, no face and a broken file, through one ``--faces all`` CLI run."""
    src = tmp_path_factory.mktemp("people-src")
    out = src.parent / (src.name + "-out")
    frames, _ = two_faces()
    write_video(src / "two.avi", frames, 12)
    write_video(src / "one.avi", two_faces(12, away=range(12))[0], 12)
    write_video(src / "none.avi", noise(), 12)
    (src / "broken.mp4").write_bytes(b"not a video")
    assert main([str(src), str(out), *ARGS]) == 0
    return src, out


def test_every_person_gets_crops_maps_rows_and_track_rows(run):
    src, out = run
    rec = read_manifest(out)["two.avi"]
    assert rec["status"] == "ok" and rec["people"] == 2 and rec["video"] is None and rec["regions"] is None
    assert rec["tracks"] == "two/tracks.csv"
    assert rec["persons"] == [
        {"person": f"person-0{p}", "video": f"two/person-0{p}.avi", "regions": f"two/person-0{p}.regions.npz"}
        for p in range(2)
    ]
    rows = read_people(out)["two.avi"]
    assert [r["person"] for r in rows] == ["person-00", "person-01"] and all(r["time"] == rec["time"] for r in rows)

    with open(out / rec["tracks"], newline="") as f:
        assert tuple(next(csv.reader(f))) == TRACK_COLUMNS
    tracks = read_tracks(out / rec["tracks"])
    _, where = two_faces()
    # Hopper (left first) is person-00 and the astronaut person-01, on both sides of the swap.
    for person, who in (("person-00", 0), ("person-01", 1)):
        mine = tracks["person"] == person
        frames = tracks["frame"][mine]
        np.testing.assert_array_equal(frames, np.flatnonzero(where[:, who] >= 0))
        centre_x = 0.5 * (tracks["x0"][mine] + tracks["x1"][mine])
        np.testing.assert_array_equal(centre_x >= W / 2, where[frames, who] == 1)
        np.testing.assert_allclose(tracks["time_s"][mine], frames / 12, atol=1e-3)
        assert (tracks["score"][mine] > 0.8).all()

        row = rows[who]
        assert row["face_frames"] == len(frames) and row["frames_without_face"] == T - len(frames)
        crops = read_frames(out / row["video"], np.arange(T))
        assert crops.shape == (T, SIZE, SIZE, 3)
        maps = load_region_maps(out / row["video"])
        assert maps.shape == (T, SIZE, SIZE)
        with np.load(out / row["regions"]) as z:
            np.testing.assert_array_equal(z["has_face"], np.isin(np.arange(T), frames))
            windows = z["boxes"]
        # The crop follows the person to the other half at the swap, without passing through the
        # middle: smoothing never averages across the jump (it would be off by ~100 px there).
        window_x = 0.5 * (windows[frames, 0] + windows[frames, 2])
        assert np.abs(window_x - centre_x).max() < 4
        assert ((0.5 * (windows[:, 0] + windows[:, 2]) >= W / 2) == (np.arange(T) >= SWAP) ^ (who == 1)).all()
    # The astronaut's crops while away borrow the last box; beyond the gap rule nothing is parsed.
    assert rows[1]["missing_face_ranges"] == [[AWAY.start, AWAY.stop]]


def test_one_face_no_face_and_a_broken_file(run):
    src, out = run
    records = read_manifest(out)
    assert records["one.avi"]["status"] == "ok" and records["one.avi"]["people"] == 1
    assert sorted(p.name for p in (out / "one").iterdir()) == ["person-00.avi", "person-00.regions.npz", "tracks.csv"]
    assert records["none.avi"]["status"] == "no_face" and records["none.avi"]["message"] == "no frame has a face"
    assert records["broken.mp4"]["status"] == "unreadable"
    assert not (out / "none").exists() and not (out / "broken").exists()
    assert not list(out.rglob(".*partial*"))


def test_a_rerun_skips_what_is_done(run, capsys):
    src, out = run
    assert main([str(src), str(out), *ARGS]) == 0
    assert "4 skipped" in capsys.readouterr().out


def _copy(run, tmp_path) -> tuple[Path, Path]:
    src, out = run
    shutil.copytree(src, tmp_path / "src")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "src", tmp_path / "out"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_more_people_than_max_faces_is_a_status_and_the_earlier_files_stay(run, tmp_path):
    src, out = _copy(run, tmp_path)
    before = _files(out / "two")
    config = PreprocessConfig(size=SIZE, faces="all", min_track=0.25, max_faces=1)
    counts = preprocess(src, out, config, progress=False)
    assert counts["too_many_faces"] == 1 and counts["ok"] == 1  # one.avi has one face
    rec = read_manifest(out)["two.avi"]
    assert rec["people"] == 2 and "more than max_faces 1" in rec["message"]
    assert _files(out / "two") == before
    assert "two.avi" not in read_people(out)


def test_a_rerun_that_fails_keeps_the_earlier_files(run, tmp_path, monkeypatch):
    src, out = _copy(run, tmp_path)
    before = _files(out / "two")

    def broken_parse(self, crop, landmarks):
        raise RuntimeError("the parser broke")

    monkeypatch.setattr(MediaPipeBackend, "parse", broken_parse)
    config = PreprocessConfig(size=SIZE, faces="all", min_track=0.25, margin=0.3)  # another config: redone
    assert preprocess(src, out, config, progress=False)["error"] == 2
    assert "the parser broke" in read_manifest(out)["two.avi"]["message"]
    assert _files(out / "two") == before
    assert not list(out.rglob(".*partial*"))


def test_a_rerun_with_fewer_people_leaves_no_stale_person(run, tmp_path):
    src, out = _copy(run, tmp_path)
    write_video(src / "two.avi", two_faces(away=range(T))[0], 12)  # the astronaut never comes
    config = PreprocessConfig(size=SIZE, faces="all", min_track=0.25)
    assert preprocess(src, out, config, progress=False)["ok"] == 1
    assert sorted(_files(out / "two")) == ["person-00.avi", "person-00.regions.npz", "tracks.csv"]
    assert set(read_tracks(out / "two" / "tracks.csv")["person"]) == {"person-00"}


def test_one_face_stays_the_default_with_its_digest():
    # The digests of caches made before --faces existed (computed with the code before it; those
    # caches were made with every frame through the models: keyframes=1).
    assert PreprocessConfig(keyframes=1).digest() == "69c6442135a8"
    assert PreprocessConfig(size=96, regions=False, max_faces=3, min_track=9, keyframes=1).digest() == "26bdb14f84c5"
    assert PreprocessConfig().digest() != PreprocessConfig(keyframes=1).digest()  # keyframes change the content
    assert PreprocessConfig(faces="all").digest() != PreprocessConfig().digest()
    with pytest.raises(ValueError, match="faces must be one of"):
        PreprocessConfig(faces="some")
    with pytest.raises(ValueError, match="max_faces"):
        PreprocessConfig(faces="all", max_faces=0)
    with pytest.raises(ValueError, match="facexlib follows one"):
        PreprocessConfig(faces="all", backend="facexlib", weights="w")


def test_the_meeting_gallery_keeps_its_identities(real_videos, tmp_path):
    """Real faces: four people, a camera off for 1.5 s, a man leaving for 3 s, two tiles swapping
    (``tests/gallery_videos.py``), in a 4×4 grid whose other twelve cameras are off: faces a
    seventh of the frame's height, which FaceMesh's own detector does not find.

    Measured (2026-12-07, mediapipe 0.10.21, AMD EPYC): of the 612 faces shown, 554 found (90.5 %:
    the woman's hand over her face and the still man in the top left corner are missed at this
    size), and all 554 given the right person (100 %): 4 people, none split, none merged, no stray;
    the lowest identity score in ``tracks.csv`` 0.935. The test asks for the issue's 95 % of the
    found faces and no split, and 85 % of the shown faces found."""
    gallery = meeting(real_videos, cells=4)
    src = tmp_path / "src"
    src.mkdir()
    write(src / "meeting.mp4", gallery)
    config = PreprocessConfig(size=32, faces="all", regions=False)  # identities only: crops, no maps
    assert preprocess(src, tmp_path / "out", config, progress=False)["ok"] == 1

    record = read_manifest(tmp_path / "out")["meeting.mp4"]
    assert record["people"] == 4 and record["dropped_people"] == 0
    tracks = read_tracks(tmp_path / "out" / record["tracks"])
    truth, person = [], []
    for t in range(len(gallery.frames)):
        rows = np.flatnonzero(tracks["frame"] == t)
        boxes = np.stack([tracks[k][rows] for k in ("x0", "y0", "x1", "y1")], 1)
        truth.append(np.array([gallery.person_at(t, b) for b in boxes], np.int64))
        person.append(np.array([int(p.removeprefix("person-")) for p in tracks["person"][rows]], np.int64))
    report = assess(truth, person)
    assert report.faces >= 0.85 * (gallery.layout >= 0).sum(), report  # the faces are found (and kept)
    assert report.accuracy >= 0.95, report
    assert not report.split and not report.merged and report.stray == 0, report
