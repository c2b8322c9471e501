"""``python -m fmae.extract --faces all``: features per person, on two real portraits that swap
places while one is away (``gallery_videos.two_faces``), beside a one-face video."""

import csv
import json

import numpy as np
import pytest
import torch
from gallery_videos import PAIR_AWAY, two_faces
from safetensors.torch import load_file

from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import preprocess, read_people
from fmae.data.video_writer import write_video
from fmae.downstream.extract import ExtractConfig, window_frames
from fmae.downstream.windows import encode_windows
from fmae.extract import main
from fmae.model import FMAE, get_config
from fmae.weights import save_encoder

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

FRAMES, STRIDE, SIZE, FPS = 4, 2, 32, 12  # a window is 8 source frames: 24 frames tile into 3


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    model = FMAE(get_config("fmae_vit_tiny", img_size=SIZE, num_frames=FRAMES)).eval()
    return model, save_encoder(model, tmp_path_factory.mktemp("enc") / "encoder.safetensors")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("people-videos")
    write_video(root / "two.avi", two_faces()[0], FPS)
    write_video(root / "one.avi", two_faces(away=range(24))[0], FPS)
    return root


def _args(weights, out, *extra):
    device = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]
    return ["--weights", str(weights), "--out-dir", str(out), "--temporal-stride", str(STRIDE), *device] + [
        "--faces",
        "all",
        "--min-track",
        "0.25",
        *extra,
    ]


def test_features_per_person_match_the_encoder_on_their_crops(encoder, videos, tmp_path, capsys):
    model, weights = encoder
    out = tmp_path / "feats"
    assert main([str(videos), *_args(weights, out)]) == 0
    assert "2 ok" in capsys.readouterr().out
    record = json.loads((out / "two.avi.features.json").read_text())
    assert [p["person"] for p in record["people"]] == ["person-00", "person-01"]

    # The same crops, from the preprocessing cache: the features are the encoder's on them.
    cache = tmp_path / "cache"
    preprocess(videos, cache, PreprocessConfig(size=SIZE, faces="all", regions=False, min_track=0.25), progress=False)
    starts, offsets, _ = window_frames(model, 24, FPS, STRIDE)
    for row in read_people(cache)["two.avi"]:
        got = load_file(str(out / f"two.avi.{row['person']}.features.safetensors"))
        assert got["features"].shape == (3, 192)
        want = encode_windows(model, cache / row["video"], starts, offsets)
        torch.testing.assert_close(got["features"], want, rtol=1e-4, atol=1e-4)
        has_face = np.ones(24, bool)
        for a, b in row["missing_face_ranges"]:
            has_face[a:b] = False
        np.testing.assert_allclose(got["face_fraction"].numpy(), has_face.reshape(3, 8).mean(1), atol=1e-6)
    # The astronaut (person-01) is away in frames 4-8: half of the first window, one frame of the second.
    away = load_file(str(out / "two.avi.person-01.features.safetensors"))["face_fraction"]
    assert away.tolist() == pytest.approx([4 / 8, 7 / 8, 1.0]) and list(PAIR_AWAY) == [4, 5, 6, 7, 8]

    with (out / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video", "window", "start_s", "end_s", "face_fraction", "status", "person"]
    assert [(r["video"], r["person"]) for r in rows].count(("two.avi", "person-01")) == 3
    assert {r["person"] for r in rows if r["video"] == "one.avi"} == {"person-00"}

    assert main([str(videos), *_args(weights, out)]) == 0
    assert "2 skipped" in capsys.readouterr().out


def test_too_many_people_is_a_recorded_status(encoder, videos, tmp_path, capsys):
    _, weights = encoder
    out = tmp_path / "feats"
    assert main([str(videos / "two.avi"), *_args(weights, out, "--max-faces", "1")]) == 0
    assert "1 too_many_faces" in capsys.readouterr().out
    record = json.loads((out / "two.avi.features.json").read_text())
    assert record["status"] == "too_many_faces" and "more than max_faces 1" in record["message"]
    assert not list(out.glob("*.safetensors"))


def test_cropped_videos_have_no_people_to_find():
    with pytest.raises(ValueError, match="--cropped"):
        ExtractConfig(weights="w", faces="all", cropped=True)
