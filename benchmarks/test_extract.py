"""Features of a whole video, in windows per second: ``fmae.extract_video`` (one decoding
pass, windows batched through the encoder) against a plain loop that decodes each window
with PyAV and runs the same encoder on it alone — with the face pipeline excluded (the
video already is face crops) and included (a face video: the pass that finds and crops
the face is part of FMAE's time; the plain loop reads the crops that pass wrote).

The encoder is ViT-B at 16×224² (``--full``) or the tiny model at 16×112² (default run),
in the dtype ``auto`` picks for the machine (bf16 on AMX CPUs), 8 windows that tile the
video (hop = window length, as MARLIN's ``extract_video``)."""

import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from fmae.data.clips import normalise_clip
from fmae.data.synthetic import render_segments
from fmae.data.video_writer import write_video
from fmae.downstream.extract import extract_video, window_frames
from fmae.downstream.windows import find_faces
from fmae.model import FMAE, get_config
from fmae.runtime.device import autocast, resolve_dtype

WINDOWS, STRIDE, BATCH = 8, 2, 8
DEVICE = torch.device("cpu")
SIZES = {"tiny": ("fmae_vit_tiny", 112), "base": ("fmae_vit_base", 224)}


@pytest.fixture(scope="module", params=["tiny", pytest.param("base", marks=pytest.mark.full)])
def setup(request, tmp_path_factory):
    name, size = SIZES[request.param]
    torch.manual_seed(0)
    encoder = FMAE(get_config(name, img_size=size)).eval()
    frames = WINDOWS * encoder.config.num_frames * STRIDE
    demo = render_segments((3,), frames / 15.0, size=size, fps=15)
    folder = tmp_path_factory.mktemp("extract")
    face_video = folder / "face.avi"
    write_video(face_video, demo.rendered.frames[:frames], demo.fps)
    crops = find_faces(face_video, folder, size).crops  # the same face, as crops
    return request.param, encoder, face_video, crops


def _plain_loop(encoder: FMAE, video: Path, dtype: torch.dtype) -> torch.Tensor:
    """Each window on its own: open the video, decode up to the window, encode it alone."""
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        total, fps = stream.frames, float(stream.average_rate)
    starts, offsets, _ = window_frames(encoder, total, fps, STRIDE)
    out = []
    for start in starts.tolist():
        wanted = set((start + offsets).tolist())
        frames = []
        with av.open(str(video)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == len(offsets):
                    break
        clip = normalise_clip(torch.from_numpy(np.stack(frames)))[None]
        with torch.no_grad(), autocast(DEVICE, dtype):
            out.append(encoder.forward_features(clip).float()[0])
    return torch.stack(out)


@pytest.mark.parametrize("impl", ["plain_loop", "fmae_extract"])
@pytest.mark.parametrize("faces", ["cropped", "face_pipeline"])
def test_extract_windows_per_s(benchmark, measure, setup, faces, impl):
    size, encoder, face_video, crops = setup
    dtype = resolve_dtype("auto", DEVICE)
    benchmark.group = f"extract {WINDOWS} windows, {size}, {str(dtype)[6:]}, {faces}"
    benchmark.extra_info["windows"] = WINDOWS
    if impl == "plain_loop":
        # The plain loop reads the crops in both cases: the face pass is FMAE's cost only.
        def run():
            return _plain_loop(encoder, crops, dtype)
    elif faces == "cropped":

        def run():
            return extract_video(
                encoder, crops, temporal_stride=STRIDE, cropped=True, batch_size=BATCH, dtype=dtype
            ).features
    else:

        def run():
            return extract_video(encoder, face_video, temporal_stride=STRIDE, batch_size=BATCH, dtype=dtype).features

    got = measure(run, impl=impl, baseline=impl == "plain_loop", rounds=3)
    assert got.shape == (WINDOWS, encoder.config.embed_dim)
    if faces == "cropped":
        want = _plain_loop(encoder, crops, dtype)
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_plain_loop_reads_what_extract_reads(setup):
    """The baseline computes the same features (fp32), so the two are timed on one job."""
    _, encoder, _, crops = setup
    with tempfile.TemporaryDirectory():
        got = extract_video(encoder, crops, temporal_stride=STRIDE, cropped=True)
    torch.testing.assert_close(got.features, _plain_loop(encoder, crops, torch.float32), rtol=1e-4, atol=1e-4)
