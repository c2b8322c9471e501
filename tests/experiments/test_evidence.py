"""``python -m fmae.ablate evidence`` (:mod:`fmae.experiments.evidence`) and its cells.

The command's plumbing runs at a toy budget with pre-training and the face
pipeline replaced by fakes (one test runs the real pre-training for a step). The dynamics set,
the tasks, the probe, the controls and the intervals have test files of their own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fmae.experiments.cells as cells
import fmae.experiments.evidence as evidence
import fmae.experiments.tasks as tasks
from fmae.ablate import main
from fmae.data import save_region_maps
from fmae.data.video_writer import write_video
from fmae.experiments.controls import CONTROLS
from fmae.face import FaceRegion
from fmae.model import FMAE, get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer

# ------------------------------------------------------------------ the command


def _fake_preprocess(src, out, config, workers=1, progress=True):
    """Stand-in for the face pipeline: face-crop videos of the right length, with regions."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for name, frames in (("WolfgangLanger_Pexels.mp4", 472), ("single_face.mp4", 24)):
        video = out / f"{Path(name).stem}.avi"
        if not video.exists():
            write_video(video, rng.integers(0, 255, (frames, config.size, config.size, 3), dtype=np.uint8), 24)
            regions = np.full((frames, config.size, config.size), FaceRegion.SKIN, np.uint8)
            regions[:, : config.size // 4] = FaceRegion.BACKGROUND
            regions[:, config.size // 3 : config.size // 2, : config.size // 2] = FaceRegion.LEFT_EYE
            save_region_maps(out / f"{Path(name).stem}.regions.npz", regions)
        lines.append(
            json.dumps(
                {
                    "source": name,
                    "status": "ok",
                    "video": video.name,
                    "frames": frames,
                    "fps": 24.0,
                    "face_frames": frames,
                    "time": 1.0,
                }
            )
        )
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return {"ok": 2}


def _toy(tmp_path: Path) -> list[str]:
    clips = tmp_path / "clips"
    clips.mkdir(exist_ok=True)
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        (clips / name).write_bytes(b"not read: the face pipeline is a fake")
    return [
        "--seeds",
        "2",
        "--steps",
        "2",
        "--img-size",
        "32",
        "--num-frames",
        "4",
        "--temporal-stride",
        "1",
        "--subjects",
        "4",
        "--video-frames",
        "8",
        "--views",
        "2",
        "--real-hop",
        "24",
        "--bootstrap",
        "200",
        "--real-videos",
        str(clips),
        "--data-dir",
        str(tmp_path / "data"),
        "--out-dir",
        str(tmp_path / "out"),
        "--num-workers",
        "0",
        "--no-progress",
    ]


def test_the_command_end_to_end_at_a_toy_budget(tmp_path, monkeypatch, capsys):
    trained = []

    def fake_pretrain(config, resume=False, progress=True):
        trained.append((config.mask_strategy, config.seed, config.dataset, Path(config.data_root).name))
        assert config.eval_clips == 0 if hasattr(config, "eval_clips") else True
        out = Path(config.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text('{"rec_loss": 1.0}\n{"rec_loss": 0.5}\n')
        return out / f"{config.mask_strategy}-{config.seed}.safetensors"

    def fake_load(path):
        torch.manual_seed(int(hashlib.sha256(str(path).encode()).hexdigest()[:8], 16))
        return type("Loaded", (), {"model": FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4))})()

    monkeypatch.setattr(tasks, "preprocess", _fake_preprocess)
    monkeypatch.setattr(cells, "pretrain", fake_pretrain)
    monkeypatch.setattr(evidence, "load_model", fake_load)
    assert main(["evidence", *_toy(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "dynamics (n=8)" in printed and "real (n=" in printed and "evidence.md" in printed
    # Two tasks × two strategies × two seeds; dynamics pre-trains on its DAiSEE layout, real on the folder
    # of training parts, never on the test parts.
    assert len(trained) == 8 and {t[2] for t in trained} == {"daisee", "folder"}
    out = tmp_path / "out"
    pre = next((tmp_path / "data").glob("evidence-real-32/pretrain-*"))
    assert all("-test-" not in p.name for p in pre.iterdir())
    assert sorted(p.name.split("-")[1] for p in pre.glob("WolfgangLanger*.avi")) == ["happy", "sad"]

    summary = json.loads((out / "evidence.json").read_text())
    assert [t["task"] for t in summary["tasks"]] == ["dynamics", "real"]
    for task in summary["tasks"]:
        assert [r["arm"] for r in task["rows"]] == ["random-init", "facial", "random"]
        assert [c["arm"] for c in task["controls"]] == [*CONTROLS, "majority"]
        assert [(c["a"], c["b"]) for c in task["comparisons"]] == [
            ("facial", "random-init"),
            ("random", "random-init"),
            ("facial", "random"),
        ]
        for row in task["rows"]:
            assert row["seeds"] == [0, 1] and len(row["accuracy"]) == 2 and row["n"] == task["n_test"]
            assert row["t_low"] <= row["mean"] <= row["t_high"] and 0 <= row["boot_low"] <= row["boot_high"] <= 1
        assert set(task["mask_coverage"]) == {"facial", "random", "token_share"}
    dynamics = summary["tasks"][0]
    assert dynamics["n_test"] == 8 and dynamics["n_clusters"] == 2 and dynamics["chance"] == 0.25
    assert dynamics["rows"][1]["rec_loss"] == [[1.0, 0.5], [1.0, 0.5]]
    assert set(summary["machine"]) >= {"cpu", "cores", "torch", "threads", "load_start", "load_end"}
    md = (out / "evidence.md").read_text()
    for text in (
        "# Does pre-training help?",
        "## Synthetic dynamics set",
        "## Real clip",
        "95 % CI over seeds (t)",
        "control: pixel mean over time",
        "majority class",
        "## Cost",
        "Machine:",
    ):
        assert text in md, text

    # A rerun reads every finished cell: nothing is pre-trained again, the numbers stay.
    trained.clear()
    threads = torch.get_num_threads()
    assert main(["evidence", *_toy(tmp_path), "--threads", "1"]) == 0
    assert trained == [] and torch.get_num_threads() == threads  # the run gives its thread setting back
    again = json.loads((out / "evidence.json").read_text())
    assert again["tasks"][0]["rows"] == summary["tasks"][0]["rows"]


def test_a_cell_really_pre_trains_and_resumes(tmp_path, toy_evidence):
    config = toy_evidence(
        seeds=1,
        steps=1,
        views=1,
        strategies="random",
        threads=0,  # pre-training leaves torch's thread count alone
        data_dir=str(tmp_path / "data"),
        out_dir=str(tmp_path / "out"),
        bootstrap=50,
    )
    task = tasks.dynamics_task(config)
    result = evidence.run_evidence_cell(task, "random", 0, config, progress=False)
    assert result["arm"] == "random" and result["n"] == 8 and Path(result["checkpoint"]).is_file()
    assert result["rec_loss_last"] is not None and not result["resumed"]
    # Killed after pre-training, before its result was written: the rerun finds the checkpoint, trains no more.
    result_file = next((tmp_path / "out" / "cells").glob("dynamics-random-seed0-*/result.json"))
    result_file.unlink()
    again = evidence.run_evidence_cell(task, "random", 0, config, progress=False)
    assert again["resumed"] and again["accuracy"] == result["accuracy"] and again["checkpoint"] == result["checkpoint"]
    # The random-init cell of seed 0 is the encoder pre-training run 0 started from (run.py seeds torch
    # with the run's seed, then builds its Pretrainer).
    start = evidence.random_init_encoder(0, config)
    torch.manual_seed(0)
    run = Pretrainer(start.config, PretrainConfig(strategy="random", batch_size=8, total_steps=1))
    before = run.model.state_dict()
    assert all(torch.equal(v, before[k]) for k, v in start.state_dict().items())


def test_bad_settings_are_clear_errors(tmp_path, capsys):
    for bad in (
        ["--seeds", "0"],
        ["--tasks", "daisee"],
        ["--strategies", "eyes"],
        ["--img-size", "40"],
        ["--real-train-fraction", "1"],
    ):
        assert main(["evidence", *bad, "--no-progress"]) == 2, bad
        assert capsys.readouterr().err.startswith("error: ")
    assert (
        main(
            [
                "evidence",
                "--tasks",
                "real",
                "--real-videos",
                str(tmp_path),
                "--data-dir",
                str(tmp_path),
                "--out-dir",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "py-feat 2.1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["evidence", "--help"])
    assert exit_info.value.code == 0 and "--tasks" in capsys.readouterr().out


def test_time_pooled_features_average_to_the_mean_pooled_ones(toy_evidence):
    from fmae.downstream.features import extract_features

    config = toy_evidence(pool="time")
    items = tasks.dynamics_task(config).train[:3]
    torch.manual_seed(0)
    encoder = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4)).eval()
    per_slice = evidence.time_features(encoder, items, 2, config, torch.device("cpu"), torch.float32)
    assert per_slice.shape == (3, 2, 2 * encoder.config.embed_dim)  # two time slices of 2 frames
    pooled = extract_features(encoder, items, views=2, stride=1).features.numpy()
    np.testing.assert_allclose(per_slice.reshape(3, 2, 2, -1).mean(2), pooled, atol=1e-5)
