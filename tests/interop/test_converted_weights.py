"""Converted weights work in every tool: a Hugging Face VideoMAEForPreTraining folder,
converted, is probed, fine-tuned, predicted with and drawn by ``fmae.viz``."""

import json

import pytest
import torch
from hf_sizes import TINY_VIDEOMAE

from fmae.convert import main as convert
from fmae.data.synthetic import render_segments
from fmae.data.video_writer import write_video
from fmae.predict import main as predict
from fmae.probe import main as probe
from fmae.viz import main as viz

transformers = pytest.importorskip("transformers")

SIZE = TINY_VIDEOMAE
COMMON = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**SIZE)).save_pretrained(folder / "hf")
    assert convert([str(folder / "hf"), str(folder / "videomae.safetensors")]) == 0
    return folder / "videomae.safetensors"


def test_probe_finetune_predict_and_viz_take_converted_weights(converted, small_set, tmp_path):
    probe_dir, finetuned = tmp_path / "probe", tmp_path / "finetune"
    data = ["--data-root", str(small_set), "--num-workers", "0", "--epochs", "2", "--batch-size", "4"]
    assert probe(["--checkpoint", str(converted), "--out-dir", str(probe_dir), *data, *COMMON]) == 0
    report = json.loads((probe_dir / "metrics.json").read_text())
    assert report["encoder"] == str(converted.resolve())
    assert (
        probe(
            [
                "--checkpoint",
                str(converted),
                "--out-dir",
                str(finetuned),
                "--finetune",
                "--finetune-epochs",
                "1",
                *data,
                *COMMON,
            ]
        )
        == 0
    )
    assert (finetuned / "encoder.safetensors").is_file()

    video = tmp_path / "rec.avi"
    demo = render_segments((3, 0), 2.0, size=64)
    write_video(video, demo.rendered.frames, demo.fps)
    out = tmp_path / "predict"
    assert (
        predict(
            [
                str(video),
                "--probe",
                str(probe_dir / "probe.safetensors"),
                "--out-dir",
                str(out),
                "--device",
                "cpu",
                "--dtype",
                "fp32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "timeline.csv").is_file()

    pictures = tmp_path / "viz"
    assert (
        viz(
            [
                "--checkpoint",
                str(converted),
                "--probe",
                str(probe_dir / "probe.safetensors"),
                "--data-root",
                str(small_set),
                "--out-dir",
                str(pictures),
                "--ratio",
                "0.5",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    assert {"reconstruction.png", "gradcam.png"} <= {p.name for p in pictures.iterdir()}
