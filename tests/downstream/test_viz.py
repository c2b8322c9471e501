import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fmae.downstream.viz as pictures
from fmae.data import list_items
from fmae.downstream.head import LinearProbe, save_probe
from fmae.downstream.viz import Sample, VizConfig, draw_masks, run_viz
from fmae.figures.drawing import (
    MASK_COLOUR,
    REGION_COLOURS,
    grid_size,
    mask_pixels,
    masks_panel,
    region_overlay,
    shown_frames,
    tile,
)
from fmae.masking import STRATEGIES, num_masked
from fmae.pretraining.train import TrainConfig, pretrain
from fmae.viz import main
from fmae.weights import fingerprint, load_model, save_encoder

CLASSES = ["very low", "low", "high", "very high"]


@pytest.fixture(scope="module")
def checkpoint(small_set, tmp_path_factory):
    """A real one-step pre-training checkpoint of the tiny model on 32×32×4 clips."""
    out = tmp_path_factory.mktemp("pretrain")
    return pretrain(
        TrainConfig(
            img_size=32,
            num_frames=4,
            batch_size=2,
            steps=1,
            warmup_steps=0,
            data_root=str(small_set),
            out_dir=str(out),
            num_workers=0,
            device="cpu",
            dtype="fp32",
        ),
        progress=False,
    )


def _probe(path, model_fingerprint, **meta):
    torch.manual_seed(0)
    probe = LinearProbe(192, len(CLASSES), "batchnorm")
    return save_probe(
        probe,
        path,
        {
            "task": "daisee",
            "kind": "classification",
            "class_names": CLASSES,
            "encoder_fingerprint": model_fingerprint,
            **meta,
        },
    )


def _args(checkpoint, small_set, out, *extra):
    return [
        "--checkpoint",
        str(checkpoint),
        "--data-root",
        str(small_set),
        "--out-dir",
        str(out),
        "--ratio",
        "0.5",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def _png_size(path):
    with Image.open(path) as im:
        return im.size


def test_cli_writes_every_picture_at_its_grid_size(checkpoint, small_set, tmp_path, capsys):
    model, has_decoder, _ = load_model(checkpoint)
    assert has_decoder
    probe = _probe(tmp_path / "probe.safetensors", fingerprint(model))
    out = tmp_path / "viz"
    assert main(_args(checkpoint, small_set, out, "--probe", str(probe), "--index", "1")) == 0
    printed = capsys.readouterr().out
    assert list_items("daisee", small_set, "Test")[1].path.name in printed
    frames = 4  # every frame of a 4-frame clip
    expected = {
        "regions.png": grid_size(2, frames, legend=True),
        "masks.png": grid_size(len(STRATEGIES), frames),
        "reconstruction.png": grid_size(3, frames),
        "gradcam.png": grid_size(2, frames),
    }
    for name, size in expected.items():
        assert _png_size(out / name) == size, name
        assert f"wrote {out / name}" in printed
    assert (out / "config.yaml").is_file()


def test_default_data_is_the_pretraining_set_at_the_models_size(checkpoint, small_set, tmp_path, monkeypatch):
    asked = []

    def fake_root(data_root, img_size, workers=1, progress=True):
        asked.append((data_root, img_size))
        return small_set

    monkeypatch.setattr(pictures, "prepared_root", fake_root)
    assert main(["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path), "--device", "cpu", "--no-progress"]) == 0
    assert asked[0] == ("", 32)
    assert {"regions.png", "masks.png", "reconstruction.png"} <= {p.name for p in tmp_path.iterdir()}


def test_clips_are_sampled_as_the_probe_was_trained(checkpoint, small_set, tmp_path):
    probe = _probe(tmp_path / "probe.safetensors", fingerprint(load_model(checkpoint).model), temporal_stride=5)
    config = VizConfig(
        checkpoint=str(checkpoint), probe=str(probe), data_root=str(small_set), out_dir=str(tmp_path), device="cpu"
    )
    assert run_viz(config, progress=False)["stride"] == 5


def test_mask_pixels_show_exactly_the_masked_fraction():
    grid, tubelet = (4, 4, 4), (2, 16, 16)
    regions = torch.randint(0, 7, (8, 64, 64), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    sample = Sample(torch.zeros(3, 8, 64, 64), regions, None, Path("x.avi"))
    masks = draw_masks(sample, grid, tubelet, ratio=0.6, seed=3)
    assert list(masks) == list(STRATEGIES)
    frames = np.zeros((8, 64, 64, 3), np.uint8)  # black: no pixel has the mask colour by chance
    pixels = [mask_pixels(m, grid, tubelet) for m in masks.values()]
    panel = masks_panel(frames, pixels)
    assert panel.shape == (4, 8, 64, 64, 3) and panel.dtype == np.uint8
    for (strategy, mask), hidden, row in zip(masks.items(), pixels, panel):
        assert hidden.shape == (8, 64, 64) and hidden.dtype == bool
        assert hidden.mean() == num_masked(strategy, grid, 0.6) / 64
        # Pixel (t, y, x) is hidden exactly when its cube is masked.
        cubes = mask.view(grid).repeat_interleave(2, 0).repeat_interleave(16, 1).repeat_interleave(16, 2)
        assert np.array_equal(hidden, cubes.numpy())
        assert np.array_equal((row == MASK_COLOUR).all(-1), hidden)
    assert not np.array_equal(pixels[1], pixels[2])  # tube and random differ
    # The tube mask repeats one spatial pattern in time; the frame mask hides whole frames.
    assert all(np.array_equal(pixels[1][0], pixels[1][t]) for t in range(8))
    assert {bool(f.all()) or not f.any() for f in pixels[3]} == {True}


def test_region_overlay_and_frame_choice():
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    regions = np.arange(32).reshape(2, 4, 4).astype(np.uint8) % 7
    assert np.array_equal(region_overlay(frames, regions, alpha=1.0), REGION_COLOURS[regions])
    assert np.array_equal(region_overlay(frames, regions, alpha=0.0), frames)
    with pytest.raises(ValueError):
        region_overlay(frames, regions + 7)
    grid = tile([frames, region_overlay(frames, regions, alpha=1.0)], gap=2)
    assert grid.shape == (10, 10, 3) and np.all(grid[4:6] == 255) and np.all(grid[:, 4:6] == 255)
    assert np.array_equal(grid[6:, 6:], REGION_COLOURS[regions[1]])
    assert shown_frames(16, 8).tolist() == [0, 2, 4, 6, 9, 11, 13, 15] and shown_frames(4, 8).tolist() == [0, 1, 2, 3]


def test_exported_encoder_and_video_without_regions_skip_what_they_cannot_draw(checkpoint, small_set, tmp_path, capsys):
    model = load_model(checkpoint).model
    encoder = save_encoder(model, tmp_path / "encoder.safetensors")
    assert load_model(encoder).has_decoder is False
    out = tmp_path / "a"
    assert main(_args(encoder, small_set, out)) == 0
    assert "no reconstruction.png" in capsys.readouterr().out
    assert not (out / "reconstruction.png").exists() and (out / "masks.png").is_file()

    video = tmp_path / "clip.avi"
    shutil.copy(list_items("daisee", small_set, "Test")[0].path, video)  # without its .regions.npz
    out = tmp_path / "b"
    (out / "regions.png").parent.mkdir()
    (out / "regions.png").write_bytes(b"an earlier run's picture")
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--video",
                str(video),
                "--out-dir",
                str(out),
                "--strategy",
                "tube",
                "--ratio",
                "0.5",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "no regions.png" in printed and not (out / "regions.png").exists()
    assert _png_size(out / "masks.png") == grid_size(3, 4)  # no facial row
    assert (out / "reconstruction.png").is_file()
    # The frame mask at 0.9 hides both time slices of a 4-frame clip: nothing to encode.
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--video",
                str(video),
                "--out-dir",
                str(tmp_path / "c"),
                "--strategy",
                "frame",
                "--ratio",
                "0.9",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "hides every token" in capsys.readouterr().out


def test_bad_inputs_give_clear_errors(checkpoint, small_set, tmp_path, capsys):
    assert main(_args(tmp_path / "missing.safetensors", small_set, tmp_path)) == 2
    assert "no weights file" in capsys.readouterr().err
    assert main(["--data-root", str(small_set)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    for ratio in ("0", "1", "1.5"):
        assert main(_args(checkpoint, small_set, tmp_path, "--ratio", ratio)) == 2
        assert "ratio must be in (0, 1)" in capsys.readouterr().err
    assert main(_args(checkpoint, small_set, tmp_path, "--index", "99")) == 2
    assert "out of range" in capsys.readouterr().err
    # A probe trained on another encoder.
    probe = _probe(tmp_path / "probe.safetensors", "0123456789abcdef")
    assert main(_args(checkpoint, small_set, tmp_path, "--probe", str(probe))) == 2
    assert "trained on encoder 0123456789abcdef" in capsys.readouterr().err
    assert not (tmp_path / "masks.png").exists()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and "--probe" in text and "--ratio" in text


def test_reconstruction_video_is_written_beside_the_picture(checkpoint, small_set, tmp_path, capsys):
    import av

    out = tmp_path / "viz"
    assert main(_args(checkpoint, small_set, out)) == 0
    video = out / "reconstruction.mp4"
    assert f"wrote {video}" in capsys.readouterr().out
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "mpeg4")
        assert stream.average_rate == Fraction(15, 2)  # the synthetic videos' 15 fps at temporal stride 2
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    side, gap = 32, pictures.VIDEO_GAP
    assert len(frames) == 4 and all(f.shape == (side, 3 * side + 2 * gap, 3) for f in frames)
    # The panels: original | masked input (grey where masked) | reconstruction, white between them.
    assert frames[0][:, side : side + gap].mean() > 200
    # An exported encoder has no decoder: no reconstruction, and an earlier run's video goes too.
    encoder = save_encoder(load_model(checkpoint).model, tmp_path / "encoder.safetensors")
    assert main(_args(encoder, small_set, out)) == 0
    assert not video.exists() and not (out / "reconstruction.png").exists()
