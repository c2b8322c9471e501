"""Clip loading on the CPU: DALI's pipeline against the plain PyTorch path (PyAV in
DataLoader workers), 16 frames of 224×224 with region maps, across temporal strides 1, 2
and 4. One round is one epoch of 4 clips (2 batches of 2) from cached MJPEG clips of the
synthetic set; both backends take the same frames of the same clips. Each backend gets
the machine's cores its own way: DALI as operator threads, PyTorch as worker processes.

The clips/s of each is in the JSON's ``extra_info``. The set (4 clips of 64 frames) is
generated once into the synthetic-set cache (``$FMAE_DATA`` or ``~/.cache/fmae``).
"""

import os

import av
import numpy as np
import pytest

from fmae.data import ClipItem, SyntheticConfig, ensure_synthetic_daisee, list_clips
from fmae.data.clips import rgb_array
from fmae.data.loader import dali_available, make_loader

BENCH_SET = SyntheticConfig(
    seed=11, num_subjects=2, clips_per_subject=2, num_frames=64, size=224, split_fractions=(1.0, 0.0, 0.0)
)
NUM_FRAMES, BATCH = 16, 2
CORES = min(2, os.cpu_count() or 1)
BACKENDS = {
    "torch": dict(backend="torch", num_workers=CORES),
    "dali": dict(backend="dali", num_workers=0),
}


@pytest.fixture(scope="module")
def items() -> list[ClipItem]:
    return [ClipItem(path, level) for path, level in list_clips(ensure_synthetic_daisee(config=BENCH_SET), "Train")]


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("impl", list(BACKENDS))
def test_loader_epoch(benchmark, measure, items, impl, stride):
    if impl == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    benchmark.group = f"loader epoch: {len(items)} clips x {NUM_FRAMES}x224x224 + region maps, stride {stride}, CPU"
    loader = make_loader(items=items, batch_size=BATCH, num_frames=NUM_FRAMES, stride=stride, seed=0, **BACKENDS[impl])

    def run():
        return [(batch["clip"].shape, batch["frame_index"]) for batch in loader]

    out = measure(run, impl=impl, baseline=impl == "torch")
    assert [shape for shape, _ in out] == [(BATCH, 3, NUM_FRAMES, 224, 224)] * 2
    assert all(((idx.diff(dim=1) == stride) | (idx[:, 1:] == 63)).all() for _, idx in out)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["clips_per_s"] = round(len(items) / benchmark.stats.stats.min, 2)


CONVERSIONS = {"pyav_to_ndarray": lambda frame: frame.to_ndarray(format="rgb24"), "rgb_array": rgb_array}


@pytest.mark.parametrize("impl", list(CONVERSIONS))
def test_decode_to_rgb(benchmark, measure, items, impl):
    """Decoding 32 MJPEG frames (yuvj420p, 224²) and converting each once to an RGB array, as
    every reader does: PyAV's ``to_ndarray`` (the baseline), which sets up swscale anew for
    every fresh frame, against :func:`fmae.data.clips.rgb_array`. The frames are decoded
    inside each round: a frame converted before keeps its context and would hide the cost."""
    path = str(items[0].path)

    def run():
        with av.open(path) as video:
            return [CONVERSIONS[impl](f) for f, _ in zip(video.decode(video=0), range(32))]

    benchmark.group = "decode + RGB conversion: 32 frames of 224x224 MJPEG (yuvj420p), CPU"
    out = measure(run, impl=impl, baseline=impl == "pyav_to_ndarray")
    with av.open(path) as video:
        assert all(np.array_equal(a, f.to_ndarray(format="rgb24")) for a, f in zip(out, video.decode(video=0)))
    assert len(out) == 32
    if benchmark.stats:
        benchmark.extra_info["ms_per_frame"] = round(benchmark.stats.stats.min / len(out) * 1e3, 3)
