"""Region-map sidecars (fmae.data.region_maps): chunked writing and reading, the legacy
one-array layout, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from fmae.data.region_maps import CHUNK, RegionMapWriter, load_region_maps, region_map_path, save_region_maps


def _maps(rng: np.random.Generator, T: int, hw: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 11, (T, *hw), dtype=np.uint8)


def test_streamed_maps_read_back_at_any_indices(tmp_path):
    rng = np.random.default_rng(0)
    T, hw = 3 * CHUNK + 7, (13, 9)  # a part chunk at the end, odd sides
    maps = _maps(rng, T, hw)
    video = tmp_path / "v.avi"
    boxes = rng.random((T, 4), dtype=np.float32)
    with RegionMapWriter(region_map_path(video), hw) as writer:
        cuts = np.sort(rng.choice(np.arange(1, T), 6, replace=False))
        for piece in np.split(maps, cuts):  # uneven pieces, some across chunk borders
            writer.write(piece)
        writer.add(boxes=boxes, has_face=np.ones(T, bool))
    np.testing.assert_array_equal(load_region_maps(video), maps)
    for _ in range(5):
        idx = rng.integers(-T, T, rng.integers(1, 40))
        np.testing.assert_array_equal(load_region_maps(video, idx, num_frames=T, hw=hw), maps[idx])
    with np.load(region_map_path(video)) as z:
        np.testing.assert_array_equal(z["boxes"], boxes)
        assert z["has_face"].all() and z["has_face"].shape == (T,)


def test_a_clip_inflates_only_its_chunks(tmp_path, monkeypatch):
    video = tmp_path / "v.avi"
    maps = _maps(np.random.default_rng(1), 10 * CHUNK, (8, 8))
    save_region_maps(region_map_path(video), maps)
    read: list[str] = []
    get = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: read.append(key) or get(self, key))
    idx = np.arange(CHUNK - 4, CHUNK + 12, 2)  # the end of chunk 0 and the start of chunk 1
    np.testing.assert_array_equal(load_region_maps(video, idx), maps[idx])
    assert sorted(k for k in read if k != "regions_shape") == ["regions_000000", "regions_000001"]


def test_legacy_single_array_sidecars_are_read(tmp_path):
    video = tmp_path / "v.avi"
    maps = _maps(np.random.default_rng(2), 20, (6, 5))
    np.savez_compressed(region_map_path(video), regions=maps)
    idx = np.array([19, 0, 7, 7])
    np.testing.assert_array_equal(load_region_maps(video, idx, 20, (6, 5)), maps[idx])
    with pytest.raises(ValueError, match="one map per video frame"):
        load_region_maps(video, idx, num_frames=21)


def test_bad_input_is_an_error(tmp_path):
    video = tmp_path / "v.avi"
    with pytest.raises(FileNotFoundError, match="no region map"):
        load_region_maps(video)
    save_region_maps(region_map_path(video), np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \(6, 4, 4\)"):
        load_region_maps(video, num_frames=6)
    with pytest.raises(ValueError, match=r"expected uint8 \(5, 4, 3\)"):
        load_region_maps(video, hw=(4, 3))
    with pytest.raises(ValueError, match="outside its 5 frames"):
        load_region_maps(video, np.array([0, 5]))
    with RegionMapWriter(tmp_path / "w.npz", (4, 4)) as writer:
        with pytest.raises(ValueError, match=r"uint8 \[n, 4, 4\]"):
            writer.write(np.zeros((2, 4, 4), np.int64))
        with pytest.raises(ValueError, match=r"uint8 \[n, 4, 4\]"):
            writer.write(np.zeros((2, 4, 5), np.uint8))
        with pytest.raises(ValueError, match="the maps' own"):
            writer.add(regions=np.zeros(1))
