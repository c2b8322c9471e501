"""Folder runs with a fake face backend (fast, no MediaPipe): resume, retry, sharding,
parallel workers, a dying worker, failures that must not lose the cache, and the manifest."""

import json
import os
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from fmae.data import load_region_maps, region_map_path
from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import find_videos, manifest_path, preprocess, read_manifest, shard
from fmae.data.video_writer import write_video
from fmae.face import Detection, FaceBackend, FaceRegion, register_backend
from fmae.face import backend as backend_mod

H, W = 48, 64


class FakeBackend(FaceBackend):
    """The "face" is the red square of :func:`clip`: its box, its corners as landmarks,
    and SKIN wherever the crop is red."""

    name = "fake"

    def detect(self, frame):
        ys, xs = np.nonzero((frame[..., 0] > 150) & (frame[..., 2] < 100))
        if len(xs) == 0:
            return None
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        return Detection(box, box.reshape(2, 2))

    def parse(self, crop, landmarks):
        if (crop[..., 1] > 150).all():  # an all-green crop: a "file" that breaks the parser
            raise RuntimeError("parser exploded")
        return np.where((crop[..., 0] > 150) & (crop[..., 2] < 100), FaceRegion.SKIN, FaceRegion.BACKGROUND).astype(
            np.uint8
        )


class CrashingBackend(FakeBackend):
    """Kills its process on an all-blue frame, as a segfaulting decoder or model would."""

    def detect(self, frame):
        if (frame[..., 2] > 150).all():
            os._exit(3)
        return super().detect(frame)


def clip(n: int = 6, x0: int = 10, face: bool = True, colour=None) -> np.ndarray:
    frames = np.full((n, H, W, 3), 30, np.uint8)
    if colour is not None:
        frames[:] = colour
    elif face:
        for t in range(n):
            frames[t, 12:32, x0 + t : x0 + t + 20] = (220, 40, 40)
    return frames


@pytest.fixture(autouse=True)
def fake_backends(monkeypatch):
    monkeypatch.setattr(backend_mod, "_REGISTRY", dict(backend_mod._REGISTRY))
    register_backend("fake", FakeBackend)
    register_backend("crashing", CrashingBackend)


CONFIG = PreprocessConfig(size=32, backend="fake")


def make_src(root: Path, n: int = 5) -> Path:
    src = root / "src"
    for i in range(n):
        (src / f"s{i % 2}").mkdir(parents=True, exist_ok=True)
        write_video(src / f"s{i % 2}" / f"v{i}.avi", clip(x0=5 + i), 15)
    return src


def statuses(out: Path) -> dict[str, str]:
    return {k: r["status"] for k, r in read_manifest(out).items()}


def test_rerun_skips_and_redoes_only_what_changed(tmp_path):
    src, out = make_src(tmp_path), tmp_path / "out"
    write_video(src / "noface.avi", clip(face=False), 15)
    first = preprocess(src, out, CONFIG, progress=False)
    assert (first["ok"], first["no_face"], first["skipped"]) == (5, 1, 0)
    again = preprocess(src, out, CONFIG, progress=False)
    assert again["skipped"] == 6 and sum(again.values()) == 6

    # A changed source, a lost cache file: redone. A no_face video: redone only with retry.
    write_video(src / "s0" / "v0.avi", clip(x0=20), 15)
    (out / "s1" / "v1.avi").unlink()
    third = preprocess(src, out, CONFIG, progress=False)
    assert (third["ok"], third["skipped"]) == (2, 4)
    assert preprocess(src, out, CONFIG, retry=True, progress=False)["no_face"] == 1
    # Another config makes another cache: everything is redone.
    assert preprocess(src, out, PreprocessConfig(size=16, backend="fake"), progress=False)["ok"] == 5
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6 + 2 + 1 + 6  # append only
    assert all(json.loads(line)["source"] for line in lines)


def test_a_failing_video_keeps_its_old_cache_and_the_run_goes_on(tmp_path):
    src, out = make_src(tmp_path, n=3), tmp_path / "out"
    preprocess(src, out, CONFIG, progress=False)
    video = out / "s0" / "v0.avi"
    before = (video.read_bytes(), region_map_path(video).read_bytes())
    # A face, then green frames that borrow its landmarks (gap rule) and make the parser raise.
    write_video(src / "s0" / "v0.avi", np.concatenate([clip(), clip(colour=(40, 220, 40))]), 15)
    counts = preprocess(src, out, CONFIG, progress=False)
    assert (counts["error"], counts["skipped"]) == (1, 2)
    rec = read_manifest(out)["s0/v0.avi"]
    assert rec["status"] == "error" and rec["message"] == "RuntimeError: parser exploded" and rec["video"] is None
    assert (video.read_bytes(), region_map_path(video).read_bytes()) == before
    assert not list(out.rglob(".*.tmp"))
    # An error is not final: the next run tries again.
    assert preprocess(src, out, CONFIG, progress=False)["error"] == 1


def test_sharding_splits_the_sorted_list_and_ranks_share_one_cache(tmp_path):
    src, out = make_src(tmp_path, n=7), tmp_path / "out"
    videos = find_videos(src)
    assert videos == sorted(videos) and len(videos) == 7
    assert shard(list(range(7)), 1, 3) == [1, 4]
    seen = []
    for rank in range(3):
        counts = preprocess(src, out, CONFIG, rank=rank, world_size=3, progress=False)
        mine = {json.loads(line)["source"] for line in manifest_path(out, rank, 3).read_text().splitlines()}
        assert mine == {v.as_posix() for v in videos[rank::3]} and counts["ok"] == len(mine)
        seen += mine
    assert sorted(seen) == [v.as_posix() for v in videos]
    assert set(statuses(out).values()) == {"ok"} and len(statuses(out)) == 7
    assert preprocess(src, out, CONFIG, progress=False)["skipped"] == 7  # unsharded rerun: all done
    with pytest.raises(ValueError, match="rank"):
        preprocess(src, out, CONFIG, rank=3, world_size=3)


@pytest.mark.slow  # spawns worker processes, each importing torch: 5-20 s on 2 busy cores
def test_parallel_workers_survive_a_dying_worker(tmp_path):
    src, out = make_src(tmp_path, n=4), tmp_path / "out"
    write_video(src / "s1" / "zz_crash.avi", clip(colour=(20, 20, 220)), 15)  # last: fewer pool restarts
    counts = preprocess(src, out, PreprocessConfig(size=32, backend="crashing"), workers=2, progress=False)
    assert (counts["ok"], counts["error"]) == (4, 1)
    manifest = read_manifest(out)
    crash = manifest.pop("s1/zz_crash.avi")
    assert crash["status"] == "error" and "worker process died on this video" in crash["message"]
    assert {r["status"] for r in manifest.values()} == {"ok"}
    # The videos in flight beside it were retried, and the cache is what one process makes.
    serial = tmp_path / "serial"
    preprocess(src, serial, CONFIG, progress=False)
    for rel in ("s0/v0.avi", "s1/v3.avi"):
        np.testing.assert_array_equal(load_region_maps(out / rel), load_region_maps(serial / rel))
        with np.load(region_map_path(out / rel)) as a, np.load(region_map_path(serial / rel)) as b:
            np.testing.assert_array_equal(a["boxes"], b["boxes"])


def test_outputs_that_would_collide_are_reported(tmp_path):
    src, out = make_src(tmp_path, n=1), tmp_path / "out"
    write_video(src / "s0" / "v0.mkv", clip(), 15)
    counts = preprocess(src, out, CONFIG, progress=False)
    assert (counts["ok"], counts["error"]) == (1, 1)
    assert "also s0/v0.avi's" in read_manifest(out)["s0/v0.mkv"]["message"]


def test_label_files_copied_and_out_inside_src_ignored(tmp_path):
    src = make_src(tmp_path, n=2)
    (src / "Labels").mkdir()
    (src / "Labels" / "TrainLabels.csv").write_text("ClipID,Engagement\nv0.avi,1\n")
    (src / ".hidden").mkdir()
    write_video(src / ".hidden" / "x.avi", clip(), 15)
    out = src / "cache"
    assert preprocess(src, out, CONFIG, progress=False)["ok"] == 2
    assert (out / "Labels" / "TrainLabels.csv").read_text() == "ClipID,Engagement\nv0.avi,1\n"
    assert preprocess(src, out, CONFIG, progress=False)["skipped"] == 2  # its own cache is not a source
    assert find_videos(src, exclude=out) == [PurePosixPath("s0/v0.avi"), PurePosixPath("s1/v1.avi")]
    with pytest.raises(ValueError, match="differ"):
        preprocess(src, src, CONFIG)
    with pytest.raises(FileNotFoundError):
        preprocess(tmp_path / "nope", out, CONFIG)


def test_manifest_survives_a_torn_line(tmp_path):
    src, out = make_src(tmp_path, n=2), tmp_path / "out"
    preprocess(src, out, CONFIG, progress=False)
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"source": "s0/v0.avi", "sta')  # a write cut short by a kill
    assert statuses(out) == {"s0/v0.avi": "ok", "s1/v1.avi": "ok"}
    write_video(src / "s1" / "v9.avi", clip(), 15)
    assert preprocess(src, out, CONFIG, progress=False)["skipped"] == 2
    assert statuses(out)["s1/v9.avi"] == "ok"  # the next record starts on a line of its own


def test_a_rerun_clears_what_a_killed_writer_left_of_the_files_it_redoes(tmp_path):
    src, out = make_src(tmp_path, n=1), tmp_path / "out"
    left = [out / "s0" / ".v0.avi.999999.tmp", out / "s0" / ".v0.regions.npz.999999.tmp"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")  # as a SIGKILL mid-write leaves it
    preprocess(src, out, CONFIG, progress=False)
    assert statuses(out) == {"s0/v0.avi": "ok"}
    assert not any(path.exists() for path in left)


def test_manifest_records_are_written_whole_through_short_writes(tmp_path, monkeypatch):
    class ShortWrites:
        """``os``, but each ``write`` takes 7 bytes at most, as a disk filling up takes part of a write."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            return os.write(fd, bytes(data[:7]))

    monkeypatch.setattr(sys.modules["fmae.data.preprocess"], "os", ShortWrites())
    src, out = make_src(tmp_path, n=2), tmp_path / "out"
    preprocess(src, out, CONFIG, progress=False)
    assert statuses(out) == {"s0/v0.avi": "ok", "s1/v1.avi": "ok"}
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
