"""The synthetic DAiSEE-layout set and the clip Dataset that reads it."""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fmae.data import clips as clips_mod
from fmae.data import synthetic
from fmae.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABEL_COLUMNS,
    SPLITS,
    VideoClipDataset,
    list_clips,
    read_frames,
    read_labels,
)
from fmae.data.region_maps import load_region_maps, region_map_path
from fmae.data.synthetic import SyntheticConfig, ensure_synthetic_daisee, generate_clip
from fmae.data.synthetic import cache as synthetic_cache
from fmae.data.synthetic import writer as synthetic_writer
from fmae.face import NUM_REGIONS, FaceRegion

# Four subjects with one clip each: levels 0..3, two subjects in Train, one each in
# Validation and Test.
TINY = SyntheticConfig(seed=7, num_subjects=4, clips_per_subject=1, num_frames=12, size=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return ensure_synthetic_daisee(tmp_path_factory.mktemp("synthetic"), TINY)


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_daisee_layout_and_label_files(tiny):
    clips = manifest(tiny)["clips"]
    assert len(clips) == 4
    for c in clips:
        video = tiny / "DataSet" / c["split"] / c["subject"] / c["clip"] / f"{c['clip']}.avi"
        assert video.is_file() and region_map_path(video).is_file()
        assert c["video"] == video.relative_to(tiny).as_posix()
    for split in SPLITS:
        text = (tiny / "Labels" / f"{split}Labels.csv").read_text()
        assert text.splitlines()[0] == "ClipID,Boredom,Engagement,Confusion,Frustration "  # DAiSEE's trailing space
        labels = read_labels(tiny / "Labels" / f"{split}Labels.csv")
        want = {f"{c['clip']}.avi": c["engagement"] for c in clips if c["split"] == split}
        assert labels == want
    subjects = {split: {c["subject"] for c in clips if c["split"] == split} for split in SPLITS}
    assert all(subjects[split] for split in SPLITS)
    assert not (
        subjects["Train"] & subjects["Validation"]
        or subjects["Train"] & subjects["Test"]
        or subjects["Validation"] & subjects["Test"]
    )
    assert sorted(c["engagement"] for c in clips) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "cfg, subjects",
    [
        (SyntheticConfig(), (6, 2, 2)),
        (synthetic.pretraining_set(), (120, 40, 40)),
        (synthetic.probing_set(), (24, 8, 8)),
    ],
)
def test_built_in_sets_balance_levels_across_splits(cfg, subjects):
    splits = cfg.subject_splits()
    assert (splits.count("Train"), splits.count("Validation"), splits.count("Test")) == subjects
    for split in SPLITS:
        levels = [
            cfg.engagement(s, c)
            for s in range(cfg.num_subjects)
            if splits[s] == split
            for c in range(cfg.clips_per_subject)
        ]
        counts = [levels.count(level) for level in range(4)]
        assert min(counts) > 0 and max(counts) - min(counts) <= 1


def test_the_pretraining_set_has_no_subject_of_the_probing_set():
    # Different seeds: no look (skin, hair, background, ...) is shared between the two sets.
    pre, probe = synthetic.pretraining_set(32), synthetic.probing_set(32)
    assert pre.seed != probe.seed and pre.clips_per_subject == 1
    looks = lambda cfg, n: {  # noqa: E731
        synthetic.sample_appearance(np.random.default_rng([cfg.seed, 0, s])).skin.tobytes() for s in range(n)
    }
    assert not looks(pre, pre.num_subjects) & looks(probe, probe.num_subjects)


def test_decoded_video_matches_drawing_and_region_maps_are_lossless(tiny):
    for c, subject in zip(manifest(tiny)["clips"], range(TINY.num_subjects)):
        g = generate_clip(TINY, subject, 0)
        assert g.clip_id == c["clip"]
        decoded = read_frames(tiny / c["video"], np.arange(TINY.num_frames))
        assert decoded.shape == g.rendered.frames.shape == (12, 64, 64, 3)
        # MJPEG at quantiser 3 with 4:2:0 chroma: luma stays close, colour edges blur.
        err = decoded.astype(np.float64) - g.rendered.frames
        luma_err = np.abs(err @ np.array([0.299, 0.587, 0.114])).mean()
        psnr = 10 * np.log10(255**2 / np.mean(err**2))
        assert luma_err < 4 and psnr > 25, (luma_err, psnr)
        regions = load_region_maps(tiny / c["video"])
        np.testing.assert_array_equal(regions, g.rendered.regions)
        assert regions.dtype == np.uint8


def test_engaged_frames_show_every_region_with_eyes_where_drawn():
    cfg = SyntheticConfig(seed=3, num_subjects=8, clips_per_subject=4, num_frames=16, size=96)
    for subject in range(cfg.num_subjects):
        clip = next(c for c in range(cfg.clips_per_subject) if cfg.engagement(subject, c) == 3)
        r = generate_clip(cfg, subject, clip).rendered
        for t in range(cfg.num_frames):
            counts = np.bincount(r.regions[t].ravel(), minlength=NUM_REGIONS)
            assert (counts > 0).all(), (subject, t, counts)
            centres = []
            for k, region in enumerate((FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE)):
                ys, xs = np.nonzero(r.regions[t] == region)
                centre = np.array([xs.mean(), ys.mean()])
                np.testing.assert_allclose(centre, r.landmarks[t, k], atol=1.0)
                centres.append(centre)
            assert centres[0][0] > centres[1][0] + 5  # the subject's left eye is on the image's right
            ys, xs = np.nonzero(r.regions[t] == FaceRegion.MOUTH)
            assert ys.mean() > max(c[1] for c in centres) + 5  # the mouth is below the eyes


def test_behaviour_follows_engagement():
    # The levels differ in what a model can see: eye opening and how far the head turns.
    rng = np.random.default_rng(0)
    opening, turn = np.zeros(4), np.zeros(4)
    for level in range(4):
        for _ in range(20):
            b = synthetic.sample_behaviour(level, 48, 15, rng)
            opening[level] += np.median(b.eye_open) / 20
            turn[level] += np.abs(b.yaw).mean() / 20
    assert (np.diff(opening) > 0).all(), opening
    assert (np.diff(turn) < 0).all(), turn


def test_same_seed_same_bytes_other_seed_other_faces(tiny, tmp_path):
    again = ensure_synthetic_daisee(tmp_path, TINY, workers=2)  # tiny was drawn by one process
    assert again != tiny and again.name == tiny.name
    for c in manifest(tiny)["clips"]:
        assert (again / c["video"]).read_bytes() == (tiny / c["video"]).read_bytes()
        with np.load(region_map_path(tiny / c["video"])) as a, np.load(region_map_path(again / c["video"])) as b:
            np.testing.assert_array_equal(load_region_maps(tiny / c["video"]), load_region_maps(again / c["video"]))
            for key in ("landmarks", "boxes"):
                np.testing.assert_array_equal(a[key], b[key])
    for split in SPLITS:
        assert (again / "Labels" / f"{split}Labels.csv").read_bytes() == (
            tiny / "Labels" / f"{split}Labels.csv"
        ).read_bytes()
    other = dataclasses.replace(TINY, seed=TINY.seed + 1)
    assert other.digest() != TINY.digest()
    assert not np.array_equal(generate_clip(other, 0, 0).rendered.frames, generate_clip(TINY, 0, 0).rendered.frames)


def test_second_call_is_cached(tiny, monkeypatch):
    stamp = (tiny / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(synthetic_cache, "write_dataset", lambda *a: pytest.fail("regenerated a finished set"))
    assert ensure_synthetic_daisee(tiny.parent, TINY) == tiny
    assert (tiny / "manifest.json").stat().st_mtime_ns == stamp


def test_default_root_honours_fmae_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FMAE_DATA", str(tmp_path / "data"))
    assert synthetic.default_root() == tmp_path / "data"
    monkeypatch.delenv("FMAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert synthetic.default_root() == tmp_path / "cache" / "fmae" / "synthetic"


def test_interrupted_generation_is_not_taken_for_done(tiny, tmp_path, monkeypatch):
    cfg = dataclasses.replace(TINY, num_subjects=3)
    final = tmp_path / f"daisee-{cfg.digest()}"

    # A run killed mid-way (its process is gone) left a temporary folder, even one that
    # holds a matching manifest: it must not count, and it is cleaned up.
    abandoned = tmp_path / f".{final.name}.partial-999999999-abc"
    (abandoned / "Labels").mkdir(parents=True)
    (abandoned / "manifest.json").write_text(json.dumps({"digest": cfg.digest(), "clips": []}))

    # A run that fails part-way leaves neither the set nor its temporary folder.
    calls = []
    real_write_video = synthetic_writer.write_video

    def flaky(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write_video(*args)

    monkeypatch.setattr(synthetic_writer, "write_video", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_daisee(tmp_path, cfg)
    assert not final.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synthetic_writer, "write_video", real_write_video)

    (abandoned / "Labels").mkdir(parents=True)
    (abandoned / "manifest.json").write_text(json.dumps({"digest": cfg.digest(), "clips": []}))
    assert ensure_synthetic_daisee(tmp_path, cfg) == final
    assert synthetic.is_complete(final, cfg) and len(manifest(final)["clips"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]

    # A finished folder with another config's manifest, or that lost a file, is not
    # complete, and is never overwritten.
    good = (final / "manifest.json").read_text()
    (final / "manifest.json").write_text(json.dumps({**json.loads(good), "digest": TINY.digest()}))
    assert not synthetic.is_complete(final, cfg)
    (final / "manifest.json").write_text(good)
    next(final.rglob("*.regions.npz")).unlink()
    assert not synthetic.is_complete(final, cfg)
    with pytest.raises(FileExistsError):
        ensure_synthetic_daisee(tmp_path, cfg)


def test_dataset_items_shapes_and_centre_window(tiny):
    ds = VideoClipDataset(tiny, "Train", num_frames=4, stride=3, random_start=False)
    assert len(ds) == 2
    labels = read_labels(tiny / "Labels" / "TrainLabels.csv")
    for i in range(len(ds)):
        item = ds[i]
        assert item["clip"].shape == (3, 4, 64, 64) and item["clip"].dtype == torch.float32
        assert item["region_map"].shape == (4, 64, 64) and item["region_map"].dtype == torch.uint8
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
        assert item["label"].item() == labels[Path(item["path"]).name]
        # 12 frames, a window of 10: centred, it starts at frame 1.
        assert item["frame_index"].tolist() == [1, 4, 7, 10]
        idx = item["frame_index"].numpy()
        np.testing.assert_array_equal(item["region_map"].numpy(), load_region_maps(item["path"])[idx])
        raw = read_frames(item["path"], idx)  # [T, H, W, 3]
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
        want = (torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 255 - mean) / std
        torch.testing.assert_close(item["clip"], want)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["clip"].shape == (2, 3, 4, 64, 64) and batch["label"].shape == (2,)


def test_dataset_random_window_is_seeded_and_strided(tiny):
    ds = VideoClipDataset(tiny, "Train", num_frames=3, stride=2, random_start=True, seed=5, with_regions=False)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        idx = ds[0]["frame_index"]
        assert torch.equal(idx, ds[0]["frame_index"])
        assert (idx.diff() == 2).all() and 0 <= idx[0] <= 12 - 5
        starts.add(idx[0].item())
    assert len(starts) > 2
    assert "region_map" not in ds[0]
    twin = VideoClipDataset(tiny, "Train", num_frames=3, stride=2, random_start=True, seed=5, with_regions=False)
    twin.set_epoch(11)
    assert torch.equal(twin[0]["frame_index"], idx)


def test_short_video_repeats_its_last_frame(tiny):
    ds = VideoClipDataset(tiny, "Test", num_frames=8, stride=2)
    assert ds[0]["frame_index"].tolist() == [0, 2, 4, 6, 8, 10, 11, 11]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_label_csv_errors(tmp_path, tiny):
    bad = tmp_path / "bad.csv"
    bad.write_text("ClipID,Boredom,Confusion\n1.avi,0,0\n")
    with pytest.raises(ValueError, match="Engagement"):
        read_labels(bad)
    bad.write_text(",".join(LABEL_COLUMNS) + "\n1.avi,0,high,0,0\n")
    with pytest.raises(ValueError, match=":2"):
        read_labels(bad)
    bad.write_text(",".join(LABEL_COLUMNS) + "\n1.avi,0,1,0,0\n1.avi,0,2,0,0\n")
    with pytest.raises(ValueError, match="twice"):
        read_labels(bad)
    with pytest.raises(ValueError, match="split"):
        list_clips(tiny, "train")

    # A labelled clip without its video is skipped with a warning, as DAiSEE has a few.
    root = tmp_path / "copy"
    shutil.copytree(tiny, root)
    video = root / manifest(tiny)["clips"][0]["video"]
    video.unlink()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    clips_mod.log.addHandler(handler)
    try:
        items = list_clips(root, "Train")
    finally:
        clips_mod.log.removeHandler(handler)
    assert len(items) == 1 and any("no video" in r.getMessage() for r in records)
    np.savez(region_map_path(items[0][0]), regions=np.zeros((12, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        VideoClipDataset(root, "Train")[0]


@pytest.mark.parametrize(
    "bad", [{"size": 15}, {"size": 8}, {"num_frames": 0}, {"qscale": 1}, {"split_fractions": (0.5, 0.5, 0.5)}]
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SyntheticConfig(**bad)


def test_broken_and_truncated_videos_raise_value_error(tiny, tmp_path):
    video = tiny / manifest(tiny)["clips"][0]["video"]
    garbage, truncated = tmp_path / "garbage.avi", tmp_path / "truncated.avi"
    garbage.write_bytes(b"not a video" * 100)
    data = video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot"):
        read_frames(garbage, np.arange(2))
    with pytest.raises(ValueError, match="ends before frame 11"):
        read_frames(truncated, np.arange(12))
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing.avi", np.arange(2))
