"""The clip loaders: DALI's CPU pipeline against PyAV and the plain PyTorch path, frame
choice (stride, seeded start, windows), region maps, sharding and bad input."""

import contextlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fmae.data import loader as loader_mod
from fmae.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_LABEL,
    ClipDataset,
    ClipItem,
    ClipSampler,
    epoch_order,
    list_clips,
    read_frames,
)
from fmae.data.loader import TorchClipLoader, make_loader, resolve_backend
from fmae.data.region_maps import load_region_maps, region_map_path, save_region_maps
from fmae.data.synthetic import SyntheticConfig, ensure_synthetic_daisee
from fmae.data.video_writer import write_video

needs_dali = pytest.mark.skipif(not loader_mod.dali_available(), reason="NVIDIA DALI is not installed")
LUMA = np.array([0.299, 0.587, 0.114])
KEYS = ["clip", "label", "frame_index", "index", "region_map"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    cfg = SyntheticConfig(
        seed=1, num_subjects=2, clips_per_subject=2, num_frames=24, size=32, split_fractions=(1.0, 0.0, 0.0)
    )
    return ensure_synthetic_daisee(tmp_path_factory.mktemp("synth"), cfg)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> list[ClipItem]:
    """Three MJPEG videos whose frame i is a flat grey 8 + 9 i + 3 v (v the video), with
    region maps that hold i % 7 everywhere: a frame's index can be read off its pixels."""
    folder = tmp_path_factory.mktemp("numbered")
    items = []
    for v, n in enumerate((24, 20, 9)):
        grey = (8 + 9 * np.arange(n) + 3 * v).astype(np.uint8)
        frames = np.broadcast_to(grey[:, None, None, None], (n, 16, 24, 3)).copy()
        path = folder / f"v{v}.avi"
        write_video(path, frames, fps=10, qscale=2)
        save_region_maps(
            region_map_path(path),
            np.broadcast_to((np.arange(n) % 7).astype(np.uint8)[:, None, None], (n, 16, 24)).copy(),
        )
        items.append(ClipItem(path, v))
    return items


@contextlib.contextmanager
def warnings_of(logger: logging.Logger):
    """The warnings ``logger`` emits inside the block (works with ``-p no:logging``)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def pixels(clip: torch.Tensor) -> np.ndarray:
    """``float32 [3, T, H, W]`` normalised → ``float [T, H, W, 3]`` in 0..255."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return ((clip.cpu() * std + mean) * 255).permute(1, 2, 3, 0).double().numpy()


def epoch(loader) -> list[dict]:
    return [{k: v.clone() for k, v in batch.items()} for batch in loader]


def cat(batches: list[dict], key: str) -> torch.Tensor:
    return torch.cat([b[key] for b in batches])


def dali(items, batch_size, **kw):
    from fmae.data.dali import DaliClipLoader

    return DaliClipLoader(items, batch_size, **kw)


@needs_dali
def test_dali_frames_are_pyav_frames_of_the_same_indices_and_maps_match(synth):
    items = [ClipItem(p, lv) for p, lv in list_clips(synth, "Train")]
    batches = epoch(dali(items, 3, num_frames=6, stride=3, seed=4))
    assert [b["clip"].shape[0] for b in batches] == [3, 1]
    assert sorted(cat(batches, "index").tolist()) == [0, 1, 2, 3]
    for b in batches:
        assert b["clip"].dtype == torch.float32 and b["clip"].shape[1:] == (3, 6, 32, 32)
        assert b["region_map"].dtype == torch.uint8 and b["region_map"].shape[1:] == (6, 32, 32)
        for clip, regions, idx, i, label in zip(
            b["clip"], b["region_map"], b["frame_index"], b["index"], b["label"], strict=True
        ):
            path, level = items[int(i)][:2]
            assert int(label) == level
            idx = idx.numpy()
            assert (np.diff(idx) == 3).all() and 0 <= idx[0] <= 24 - 16
            everything = read_frames(path, np.arange(24)).astype(np.float64) @ LUMA  # [24, H, W]
            got = pixels(clip) @ LUMA
            # The same frame within JPEG decoder differences; every other frame is further.
            err = np.abs(got[:, None] - everything[None]).mean(axis=(2, 3))  # [T, 24]
            assert (err.argmin(axis=1) == idx).all(), err
            assert err[np.arange(6), idx].max() < 1.5
            np.testing.assert_array_equal(regions.numpy(), load_region_maps(path)[idx])


@needs_dali
def test_dali_frame_numbers_pixels_and_region_maps_agree(numbered):
    for batch in dali(numbered, 2, num_frames=5, stride=2, seed=9):
        for clip, regions, idx, i in zip(
            batch["clip"], batch["region_map"], batch["frame_index"], batch["index"], strict=True
        ):
            grey = pixels(clip).mean(axis=(1, 2, 3))
            frame = np.rint((grey - 8 - 3 * int(i)) / 9)
            np.testing.assert_array_equal(frame, idx.numpy())
            assert torch.equal(regions, (idx % 7).to(torch.uint8).view(-1, 1, 1).expand(-1, 16, 24))


@needs_dali
@pytest.mark.parametrize("shuffle", [True, False])
def test_dali_and_torch_give_the_same_batches(synth, shuffle):
    items = [ClipItem(p, lv) for p, lv in list_clips(synth, "Train")]
    kw = dict(num_frames=4, stride=2, seed=2, shuffle=shuffle)
    from_dali, from_torch = dali(items, 3, **kw), TorchClipLoader(items, 3, **kw)
    assert len(from_dali) == len(from_torch) == 2
    for _ in range(2):  # two epochs: fresh windows and order in both
        a, b = epoch(from_dali), epoch(from_torch)
        assert [list(x) for x in a] == [list(x) for x in b] == [KEYS, KEYS]
        for x, y in zip(a, b, strict=True):
            for key in ("label", "frame_index", "index", "region_map"):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            assert x["clip"].shape == y["clip"].shape and x["clip"].dtype == y["clip"].dtype
            assert (x["clip"] - y["clip"]).abs().mean() < 0.1  # JPEG decoders differ a little
    assert from_dali.epoch == from_torch.epoch == 2


@needs_dali
def test_dali_normalises_like_the_torch_path(numbered):
    # Flat grey frames decode the same in any JPEG decoder: the normalisation is all that differs.
    kw = dict(num_frames=3, stride=1, random_start=False, shuffle=False, with_regions=False)
    a, b = epoch(dali(numbered, 3, **kw))[0], epoch(TorchClipLoader(numbered, 3, **kw))[0]
    assert "region_map" not in a and "region_map" not in b
    torch.testing.assert_close(a["clip"], b["clip"], atol=0.05, rtol=0)


@needs_dali
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_dali_stride_and_seeded_start(numbered, stride):
    starts = set()
    for seed in range(4):
        first = epoch(dali(numbered[:1], 1, num_frames=4, stride=stride, seed=seed))
        again = epoch(dali(numbered[:1], 1, num_frames=4, stride=stride, seed=seed))
        idx = first[0]["frame_index"][0]
        assert torch.equal(idx, again[0]["frame_index"][0])
        assert (idx.diff() == stride).all() and 0 <= idx[0] <= 24 - (3 * stride + 1)
        want = ClipSampler(4, stride, True, seed).indices(0, 0, 24)
        np.testing.assert_array_equal(idx.numpy(), want)
        starts.add(int(idx[0]))
    assert len(starts) > 1


@needs_dali
def test_dali_windows_short_videos_and_float_labels(numbered):
    items = [
        ClipItem(numbered[0].path, 0.66, 10, 18),
        ClipItem(numbered[2].path, 0.33),
    ]  # 8-frame window; 9-frame video
    (batch,) = epoch(dali(items, 2, num_frames=4, stride=3, seed=1, shuffle=False))
    assert batch["label"].dtype == torch.float32 and batch["label"].tolist() == pytest.approx([0.66, 0.33])
    # Both are shorter than the 10-frame span: they start at the window's start and repeat its last frame.
    assert batch["frame_index"].tolist() == [[10, 13, 16, 17], [0, 3, 6, 8]]
    grey = pixels(batch["clip"][0]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, 8 + 9 * np.array([10, 13, 16, 17]), atol=1.5)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_epoch_order_shards_cover_every_item_once_per_round(batch_size):
    for n, shards in ((10, 2), (7, 3), (5, 1), (2, 4), (13, 2)):
        parts = [epoch_order(n, 3, True, 0, k, shards, batch_size) for k in range(shards)]
        assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // shards)
        joined = np.concatenate(parts)
        assert set(joined.tolist()) == set(range(n))
        assert len(joined) - len(set(joined.tolist())) == len(parts[0]) * shards - n  # only the wrap-round repeats
    assert not np.array_equal(epoch_order(50, 0, True), epoch_order(50, 1, True))
    np.testing.assert_array_equal(epoch_order(5, 7, False), np.arange(5))
    with pytest.raises(ValueError, match="shard_id"):
        epoch_order(5, 0, True, 0, 2, 2)


def test_epoch_order_shards_are_blocks_of_the_global_batches():
    """Shard k's i-th batch is the k-th block of the single process's i-th global batch."""
    for n, shards, b in ((20, 2, 3), (17, 4, 2), (9, 3, 1)):
        whole = epoch_order(n, 1, True, 7, batch_size=b * shards, drop_last=True)
        parts = [epoch_order(n, 1, True, 7, k, shards, b, drop_last=True) for k in range(shards)]
        assert all(len(p) == n // (b * shards) * b for p in parts)
        rebuilt = [x for i in range(len(parts[0]) // b) for p in parts for x in p[i * b : (i + 1) * b].tolist()]
        assert rebuilt == whole.tolist()


@pytest.mark.parametrize("backend", [pytest.param("dali", marks=needs_dali), "torch"])
def test_sharding_splits_items(numbered, backend):
    items = numbered + numbered  # six items
    seen = []
    for shard in range(2):
        loader = make_loader(
            items=items, batch_size=2, num_frames=2, shard_id=shard, num_shards=2, seed=5, backend=backend
        )
        assert len(loader) == 2
        got = cat(epoch(loader), "index").tolist()
        assert got == epoch_order(6, 0, True, 5, shard, 2, batch_size=2).tolist()
        seen.append(set(got))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(6))


@pytest.mark.parametrize("backend", [pytest.param("dali", marks=needs_dali), "torch"])
def test_drop_last_len_and_unlabelled_items(numbered, backend):
    items = [ClipItem(it.path) for it in numbered]
    loader = make_loader(items=items, batch_size=2, num_frames=2, drop_last=True, backend=backend, with_regions=False)
    batches = epoch(loader)
    assert len(loader) == len(batches) == 1 and batches[0]["clip"].shape[0] == 2
    assert batches[0]["label"].tolist() == [NO_LABEL, NO_LABEL] and batches[0]["label"].dtype == torch.int64
    keep = make_loader(items=items, batch_size=2, num_frames=2, backend=backend, with_regions=False)
    assert len(keep) == 2 and [b["clip"].shape[0] for b in epoch(keep)] == [2, 1]


@pytest.mark.parametrize("backend", [pytest.param("dali", marks=needs_dali), "torch"])
def test_set_epoch_and_leaving_an_epoch_early(numbered, backend):
    loader = make_loader(items=numbered, batch_size=1, num_frames=3, seed=3, backend=backend)
    first = epoch(loader)
    next(iter(loader))  # epoch 1, left after one batch
    third = epoch(loader)
    loader.set_epoch(0)
    again = epoch(loader)
    twin = make_loader(items=numbered, batch_size=1, num_frames=3, seed=3, backend=backend, epoch=2)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["frame_index"], b["frame_index"]) and torch.equal(a["index"], b["index"])
    for a, b in zip(third, epoch(twin), strict=True):
        assert torch.equal(a["frame_index"], b["frame_index"]) and torch.equal(a["index"], b["index"])
    assert (
        cat(first, "index").tolist() != cat(third, "index").tolist()
        or cat(first, "frame_index").tolist() != cat(third, "frame_index").tolist()
    )


@pytest.mark.parametrize("backend", [pytest.param("dali", marks=needs_dali), "torch"])
@pytest.mark.parametrize("workers", [0, 2])
def test_start_batch_resumes_an_epoch_where_it_stopped(numbered, backend, workers):
    items = numbered * 3  # 9 items: batches of 2 at 0, 2, 4, 6 (and 8 unless drop_last)
    kw = dict(items=items, batch_size=2, num_frames=3, seed=4, backend=backend, num_workers=workers, drop_last=True)
    straight = make_loader(**kw, epoch=1)
    want = epoch(straight), epoch(straight)
    resumed = make_loader(**kw, epoch=1, start_batch=3)
    got = epoch(resumed), epoch(resumed)  # epoch 1 from its 4th batch, then all of epoch 2
    assert [len(e) for e in got] == [1, 4]
    for a, b in zip(want[0][3:] + want[1], got[0] + got[1], strict=True):
        for key in KEYS:
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="start_batch"):
        make_loader(**kw, start_batch=-1)


@pytest.mark.parametrize("backend", [pytest.param("dali", marks=needs_dali), "torch"])
def test_worker_processes_give_the_same_batches_every_epoch(numbered, backend):
    kw = dict(items=numbered, batch_size=2, num_frames=3, stride=2, seed=8, backend=backend)
    alone, workers = make_loader(**kw), make_loader(num_workers=2, **kw)
    for _ in range(2):  # the epoch reaches the (persistent) workers
        for x, y in zip(epoch(alone), epoch(workers), strict=True):
            for key in KEYS:
                assert torch.equal(x[key], y[key]), key
    if backend == "torch":  # forked from this threaded process, a worker can wait forever on a copied lock
        assert workers._loader.multiprocessing_context.get_start_method() == "forkserver"


def test_a_decoding_error_in_this_process_is_not_called_a_dead_worker(numbered, monkeypatch):
    def truncated(self, index, epoch):
        raise EOFError("truncated video")  # what PyAV's EOF error is, among others

    monkeypatch.setattr(ClipDataset, "clip", truncated)
    with pytest.raises(EOFError, match="truncated video"):
        epoch(make_loader(items=numbered, batch_size=2, num_frames=3, backend="torch"))


@needs_dali
def test_dali_names_the_files_of_a_batch_it_cannot_decode(tmp_path, numbered):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    items = [numbered[0], ClipItem(junk, 1)]
    # PyAV cannot count its frames: the source fails in Python, naming the file.
    loader = dali(items, 2, num_frames=2, with_regions=False, shuffle=False)
    with pytest.raises((RuntimeError, ValueError), match="junk.avi"):
        epoch(loader)
    # The loader rebuilds its pipeline and goes on once the bad item is gone.
    loader.items[1] = numbered[1]
    assert [b["clip"].shape[0] for b in epoch(loader)] == [2]


@needs_dali
def test_dali_region_maps_that_do_not_fit_are_an_error(tmp_path, numbered):
    path = tmp_path / "v.avi"
    path.write_bytes(numbered[0].path.read_bytes())
    np.savez(region_map_path(path), regions=np.zeros((24, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="do not fit"):
        epoch(dali([ClipItem(path, 0)], 1, num_frames=2))
    np.savez(region_map_path(path), regions=np.zeros((23, 16, 24), np.uint8))
    with pytest.raises((RuntimeError, ValueError), match="one map per video frame"):
        epoch(dali([ClipItem(path, 0)], 1, num_frames=2))


def test_make_loader_picks_backends_and_skips_items_without_region_maps(tmp_path, numbered, monkeypatch):
    bare = tmp_path / "bare.avi"
    bare.write_bytes(numbered[0].path.read_bytes())
    items = list(numbered) + [ClipItem(bare, 0)]
    with warnings_of(loader_mod.log) as records:
        loader = make_loader(items=items, batch_size=4, num_frames=2, backend="torch")
    assert isinstance(loader, TorchClipLoader) and len(loader.items) == 3
    assert any("no region map" in r.getMessage() and "bare.avi" in r.getMessage() for r in records)
    assert len(make_loader(items=items, batch_size=4, num_frames=2, backend="torch", with_regions=False).items) == 4
    with pytest.raises(FileNotFoundError, match="region map"):
        make_loader(items=[ClipItem(bare, 0)], backend="torch")
    with pytest.raises(ValueError, match="backend"):
        make_loader(items=items, backend="nvdec")
    with pytest.raises(ValueError, match="root"):
        make_loader()
    with pytest.raises(ValueError, match="mix label kinds"):
        make_loader(items=[ClipItem(numbered[0].path, 1), ClipItem(numbered[1].path, 0.5)], backend="torch")
    monkeypatch.setattr(loader_mod, "dali_available", lambda: False)
    assert resolve_backend("auto") == "torch"
    with pytest.raises(ImportError, match="pip install nvidia-dali"):
        resolve_backend("dali")
    monkeypatch.setattr(loader_mod, "dali_available", lambda: True)
    assert resolve_backend("auto") == "dali"


@needs_dali
def test_make_loader_over_a_daisee_folder(synth):
    loader = make_loader(synth, "Train", batch_size=2, num_frames=4)
    assert type(loader).__name__ == "DaliClipLoader" and len(loader.items) == 4
    batch = next(iter(loader))
    assert batch["clip"].shape == (2, 3, 4, 32, 32) and batch["region_map"].shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="device_id"):
        dali(loader.items, 1, device_id=-1)


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_read_frames_matches_a_full_decode(tmp_path, codec):
    """MJPEG takes the packet-skipping path, MPEG-4 (inter-frame) the sequential one."""
    import av

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (30, 32, 48, 3), dtype=np.uint8)
    frames[:, :8] = (np.arange(30) * 8).astype(np.uint8)[:, None, None, None]  # a band that changes each frame
    path = tmp_path / f"{codec}.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = 48, 32
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.codec.intra_only == (codec == "mjpeg")
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert len(full) == 30
    for idx in ([0], [29], [3, 3, 0, 17], list(range(1, 30, 4)), rng.integers(0, 30, 12).tolist()):
        np.testing.assert_array_equal(read_frames(path, np.array(idx)), full[idx])
    with pytest.raises(ValueError, match="ends before frame 30"):
        read_frames(path, np.array([2, 30]))


def test_clip_sampler_windows_and_bad_arguments():
    centred = ClipSampler(4, 2, random_start=False)
    np.testing.assert_array_equal(centred.indices(0, 0, 20), [6, 8, 10, 12])  # room 13, start 13 // 2
    np.testing.assert_array_equal(centred.indices(0, 0, 40, 10, 20), [11, 13, 15, 17])
    np.testing.assert_array_equal(centred.indices(0, 0, 15, 10, 20), [10, 12, 14, 14])  # the window is cut to the video
    seeded = ClipSampler(4, 2, random_start=True, seed=1)
    draws = {int(seeded.indices(i, e, 100, 30, 60)[0]) for i in range(5) for e in range(5)}
    assert len(draws) > 5 and min(draws) >= 30 and max(draws) <= 60 - 7
    for bad in ((0, 2), (4, 0)):
        with pytest.raises(ValueError, match="must be >= 1"):
            ClipSampler(*bad)
    with pytest.raises(ValueError, match="empty"):
        centred.indices(0, 0, 10, 10, 20)
