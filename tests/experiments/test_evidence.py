"""``python -m fmae.ablate evidence`` (:mod:`fmae.experiments.evidence`) and the dynamics set it probes on.

The dynamics set's levels must be out of reach of static statistics by construction: the
level changes only how fast the face moves, never the look, pose, light or any frame's
distribution. The command's plumbing runs at a toy budget with pre-training and the face
pipeline replaced by fakes (one test runs the real pre-training for a step); the
statistics are checked on hand-worked examples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import fmae.experiments.evidence as evidence
from fmae.ablate import main
from fmae.data import SyntheticConfig, daisee_items, save_region_maps
from fmae.data.synthetic import (
    DYNAMICS_WIDTHS_S,
    generate_clip,
    sample_appearance,
    sample_dynamics,
    smoothing_taps,
    unit_process,
)
from fmae.data.video_writer import write_video
from fmae.experiments.evidence import (
    EvidenceConfig,
    cluster_bootstrap,
    paired_bootstrap,
    probe_accuracy,
    real_parts,
    t_interval,
    wilson_interval,
    windows,
)
from fmae.face import FaceRegion
from fmae.model import FMAE, get_config
from fmae.pretraining.step import PretrainConfig, Pretrainer

POSE = ("yaw", "pitch", "roll", "dx", "dy", "scale")
FACE = ("eye_open", "gaze_x", "gaze_y", "mouth_open")


# ------------------------------------------------------------------ the dynamics set


def test_the_default_set_is_unchanged_by_the_dynamics_option():
    # Pinned before the option existed: the default set's digest (its cache folder) and pixels.
    assert SyntheticConfig().digest() == "e189ecdc62e9"
    small = SyntheticConfig(size=32, num_frames=12, num_subjects=2, clips_per_subject=2)
    assert small.digest() == "b6646fc9beb7"
    h = hashlib.sha256()
    for s in range(2):
        for c in range(2):
            g = generate_clip(small, s, c)
            h.update(g.rendered.frames.tobytes())
            h.update(g.rendered.regions.tobytes())
    assert h.hexdigest() == "84360f88b665a2fb9dd7f213e412cf0edd91ca4dffc5a1439996098d044d7033"
    assert dataclasses.replace(small, dynamics=True).digest() != small.digest()


def test_the_level_never_touches_pose_look_or_the_random_streams():
    draws = []
    for level in range(len(DYNAMICS_WIDTHS_S)):
        pose_rng, face_rng = np.random.default_rng(7), np.random.default_rng(8)
        motion = sample_dynamics(level, 48, 15, pose_rng, face_rng)
        # Both generators are consumed alike at every level: what is drawn after them does not move.
        draws.append((motion, pose_rng.random(), face_rng.random()))
    first = draws[0][0]
    for motion, after_pose, after_face in draws[1:]:
        assert after_pose == draws[0][1] and after_face == draws[0][2]
        for name in POSE:
            np.testing.assert_array_equal(getattr(motion, name), getattr(first, name))
        assert any(not np.array_equal(getattr(motion, n), getattr(first, n)) for n in FACE)


def test_every_frame_has_the_same_distribution_at_every_level():
    for level, seconds in enumerate(DYNAMICS_WIDTHS_S):
        taps = smoothing_taps(max(1, round(seconds * 15)))
        assert np.isclose(np.sum(taps**2), 1.0)  # unit norm: filtered N(0, 1) noise stays N(0, 1)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4000, 60))
    frame = {w: unit_process(noise, w, 8)[:, 4] for w in (3, 24)}
    for values in frame.values():
        assert abs(values.mean()) < 0.06 and abs(values.std() - 1) < 0.05
    # The facial values of one frame, over many clips: level 0 and level 3 are the same distribution.
    samples = {
        level: np.array(
            [
                [
                    getattr(
                        sample_dynamics(
                            level, 24, 15, np.random.default_rng([level, i]), np.random.default_rng([level, i, 1])
                        ),
                        n,
                    )[12]
                    for n in FACE
                ]
                for i in range(300)
            ]
        )
        for level in (0, 3)
    }
    for k, name in enumerate(FACE):
        assert stats.ks_2samp(samples[0][:, k], samples[3][:, k]).pvalue > 1e-3, name
    with pytest.raises(ValueError, match="level"):
        sample_dynamics(4, 8, 15, np.random.default_rng(0), np.random.default_rng(0))


def test_a_clip_at_another_level_differs_only_in_the_face(monkeypatch):
    config = SyntheticConfig(size=48, num_frames=16, num_subjects=2, clips_per_subject=1, dynamics=True)
    clips = {}
    for level in (0, 3):
        monkeypatch.setattr(SyntheticConfig, "engagement", lambda self, s, c, level=level: level)
        clips[level] = generate_clip(config, 1, 0)
    a, b = clips[0].rendered, clips[3].rendered
    assert clips[0].engagement == 0 and clips[3].engagement == 3
    outside = np.isin(a.regions, (FaceRegion.HAIR, FaceRegion.BACKGROUND)) & (a.regions == b.regions)
    assert outside.mean() > 0.3
    np.testing.assert_array_equal(a.frames[outside], b.frames[outside])  # look, place, light and noise: identical
    assert not np.array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.boxes, b.boxes)  # the head is where it was, as large


# ----------------------------------------------------------------------- statistics


def test_intervals_on_hand_worked_examples():
    mean, lo, hi = t_interval([0.5, 0.6, 0.7])  # s = 0.1, t(0.975, 2) = 4.3027: half width 0.2484
    assert mean == pytest.approx(0.6)
    assert lo == pytest.approx(0.35159, abs=1e-4) and hi == pytest.approx(0.84841, abs=1e-4)
    assert np.isnan(t_interval([0.5])[1])
    lo, hi = wilson_interval(8, 10)  # the textbook 8/10: 0.4902 – 0.9433
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)

    # Two clusters of two items: one all right, one all wrong. Resampling whole clusters gives 0, 0.5 or 1.
    acc, lo, hi = cluster_bootstrap(np.array([1, 1, 0, 0]), ["a", "a", "b", "b"], reps=2000)
    assert acc == 0.5 and lo == 0.0 and hi == 1.0
    assert cluster_bootstrap(np.ones((3, 5)), list("abcde"))[1:] == (1.0, 1.0)
    same = paired_bootstrap(np.array([[1, 0, 1]]), np.array([[1, 0, 1]]), ["x", "y", "z"])
    assert same["diff"] == 0 and same["low"] == same["high"] == 0 and same["p_le_0"] == 1.0
    better = paired_bootstrap(np.ones((2, 6)), np.zeros((2, 6)), list("aabbcc"))
    assert better["diff"] == 1 and better["low"] == 1 and better["p_le_0"] == 0.0


def test_the_probe_reads_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 20)
    groups = [f"g{i // 4}" for i in range(40)]
    x = rng.normal(size=(40, 2, 5))
    x[:, :, 0] += 4 * y[:, None]
    out = probe_accuracy(x, y, groups, x + 0.1 * rng.normal(size=x.shape), y)
    assert out["accuracy"] == 1.0 and len(out["correct"]) == 40 and out["C"] in evidence.PROBE_CS
    noise = probe_accuracy(
        rng.normal(size=(40, 1, 5)), y, groups, rng.normal(size=(200, 1, 5)), rng.integers(0, 2, 200)
    )
    assert 0.3 < noise["accuracy"] < 0.7


def test_real_parts_keep_a_clip_span_between_train_and_test():
    span = 15
    parts = real_parts(472, 24.0, span, 0.5)
    assert [(p["class"], p["split"]) for p in parts] == [
        ("sad", "train"),
        ("sad", "test"),
        ("happy", "train"),
        ("happy", "test"),
    ]
    assert parts[0]["start"] == 0 and parts[1]["stop"] == 216 and parts[2]["start"] == 240 and parts[3]["stop"] == 472
    for train, test in (parts[0:2], parts[2:4]):
        assert test["start"] - train["stop"] == span  # no window can reach across
    items, blocks = windows(Path("x.avi"), 1, 100, span, 4)
    assert all(it.stop - it.start == span and it.stop <= 100 for it in items) and len(items) == 22
    assert blocks[0] == blocks[3] == "x:0" and blocks[4] == "x:1"
    with pytest.raises(ValueError, match="too short"):
        real_parts(250, 24.0, 120, 0.5)


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

    monkeypatch.setattr(evidence, "preprocess", _fake_preprocess)
    monkeypatch.setattr(evidence, "pretrain", fake_pretrain)
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
        assert [c["arm"] for c in task["controls"]] == [*evidence.CONTROLS, "majority"]
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


def test_a_cell_really_pre_trains_and_resumes(tmp_path):
    config = EvidenceConfig(
        tasks="dynamics",
        seeds=1,
        steps=1,
        img_size=32,
        num_frames=4,
        temporal_stride=1,
        subjects=4,
        video_frames=8,
        views=1,
        strategies="random",
        num_workers=0,
        threads=0,  # pre-training leaves torch's thread count alone
        data_dir=str(tmp_path / "data"),
        out_dir=str(tmp_path / "out"),
        bootstrap=50,
    )
    task = evidence.dynamics_task(config)
    result = evidence.run_cell(task, "random", 0, config, progress=False)
    assert result["arm"] == "random" and result["n"] == 8 and Path(result["checkpoint"]).is_file()
    assert result["rec_loss_last"] is not None and not result["resumed"]
    # Killed after pre-training, before its result was written: the rerun finds the checkpoint, trains no more.
    result_file = next((tmp_path / "out" / "cells").glob("dynamics-random-seed0-*/result.json"))
    result_file.unlink()
    again = evidence.run_cell(task, "random", 0, config, progress=False)
    assert again["resumed"] and again["accuracy"] == result["accuracy"] and again["checkpoint"] == result["checkpoint"]
    # The random-init cell of seed 0 is the encoder pre-training run 0 started from (run.py seeds torch
    # with the run's seed, then builds its Pretrainer).
    start = evidence._encoder(task, evidence.RANDOM_INIT, 0, config, tmp_path, False)[0]
    torch.manual_seed(0)
    run = Pretrainer(start.config, PretrainConfig(strategy="random", batch_size=8, total_steps=1))
    before = run.model.state_dict()
    assert all(torch.equal(v, before[k]) for k, v in start.state_dict().items())


def test_a_pre_training_pool_of_other_people(tmp_path):
    settings = dict(tasks="dynamics", img_size=32, subjects=4, video_frames=8, views=1, data_dir=str(tmp_path))
    own = evidence.dynamics_task(EvidenceConfig(**settings))
    config = EvidenceConfig(**settings, pretrain_people=6)
    task = evidence.dynamics_task(config)
    assert (task.train, task.test) == (own.train, own.test)  # the probe reads the same videos
    pool = daisee_items(task.pretrain_root, "Train")
    assert task.pretrain_root != own.pretrain_root and len(pool) == 6
    assert len({Path(it.path).parent.parent.name for it in pool}) == 6  # six people, one video each
    assert "pool of 6 other people" in task.facts["pretraining_saw"]
    # Other people: no look of the pool is a look of the probed set; the cells are told apart.
    pool_config, probed = evidence.dynamics_pool_config(config), evidence.dynamics_config(config)

    def looks(c: SyntheticConfig) -> set[bytes]:
        return {sample_appearance(np.random.default_rng([c.seed, 0, s])).skin.tobytes() for s in range(c.num_subjects)}

    assert not looks(pool_config) & looks(probed)
    assert evidence.cell_name(task, "facial", 0, config) != evidence.cell_name(own, "facial", 0, config)


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


def test_controls_see_the_clips_the_encoder_sees(tmp_path):
    config = EvidenceConfig(
        tasks="dynamics",
        img_size=32,
        num_frames=4,
        temporal_stride=1,
        subjects=4,
        video_frames=8,
        views=2,
        num_workers=0,
        data_dir=str(tmp_path),
    )
    task = evidence.dynamics_task(config)
    stats_ = evidence.clip_statistics(task.train[:3], 2, config)
    assert stats_["mean colour"].shape == (3, 2, 3) and stats_["pixel mean over time"].shape == (3, 2, 3 * 8 * 8)
    assert not np.array_equal(stats_["motion energy"][:, 0], stats_["motion energy"][:, 1])  # two different starts


def test_time_pooled_features_average_to_the_mean_pooled_ones(tmp_path):
    from fmae.downstream.features import extract_features

    config = EvidenceConfig(
        tasks="dynamics",
        img_size=32,
        num_frames=4,
        temporal_stride=1,
        subjects=4,
        video_frames=8,
        views=2,
        num_workers=0,
        data_dir=str(tmp_path),
        pool="time",
    )
    items = evidence.dynamics_task(config).train[:3]
    torch.manual_seed(0)
    encoder = FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4)).eval()
    per_slice = evidence.time_features(encoder, items, 2, config, torch.device("cpu"), torch.float32)
    assert per_slice.shape == (3, 2, 2 * encoder.config.embed_dim)  # two time slices of 2 frames
    pooled = extract_features(encoder, items, views=2, stride=1).features.numpy()
    np.testing.assert_allclose(per_slice.reshape(3, 2, 2, -1).mean(2), pooled, atol=1e-5)
