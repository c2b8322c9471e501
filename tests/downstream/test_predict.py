"""python -m fmae.predict: engagement over time from a recording, its windows, outputs and errors."""

import csv
import json

import numpy as np
import pytest
import torch
from predict_helpers import tiny_predictor

from fmae.data import ClipItem, make_loader
from fmae.data.clips import normalise_clip
from fmae.data.synthetic import render_segments
from fmae.data.video_writer import write_video
from fmae.downstream import predict as predict_module
from fmae.downstream.features import extract_features
from fmae.downstream.fit import train_probe
from fmae.downstream.head import LinearProbe, load_probe, save_probe
from fmae.downstream.predict import (
    NO_FACE,
    PredictConfig,
    run_predict,
    save_timeline_png,
    score_windows,
    timeline_summary,
    window_plan,
    write_timeline_csv,
)
from fmae.downstream.probe import TASKS
from fmae.downstream.windows import Faces, encode_windows, find_faces, window_clips, window_starts
from fmae.model import FMAE, get_config
from fmae.predict import main
from fmae.weights import save_encoder

pytest.importorskip("mediapipe")

CLASSES = list(TASKS["daisee"].class_names)
SECONDS = 2.0  # per segment: 30 frames at 15 fps, about seven 8-frame windows
SIZE = 64  # raw video side; MediaPipe finds the synthetic faces from 32 px up
CPU = ["--device", "cpu", "--dtype", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A random-init tiny encoder (32², 4 frames, stride 2), a recording of subject 9
    acting levels 3, 0, 3 (``talk.avi``, 2 s each) and a 4-class probe that tells its
    segments apart.

    The probe is trained the way ``python -m fmae.probe`` trains one
    (:func:`fmae.downstream.features.extract_features` over clip items, then
    :func:`fmae.downstream.fit.train_probe`) on the clips of this recording that start on odd
    frames; prediction's windows start on even frames, so it is scored on frames it never
    saw. (A random-init encoder's features at 32² are dominated by a subject's look: a
    probe trained on other subjects calls every window of subject 9 "very high", so the
    test checks the pipeline — faces, windows, timing, features, outputs — not the encoder.)
    """
    d = tmp_path_factory.mktemp("predictor")
    encoder, encoder_path, meta = tiny_predictor(d, CLASSES)
    truth = render_segments([3, 0, 3], SECONDS, size=SIZE, seed=9)
    write_video(d / "talk.avi", truth.rendered.frames, truth.fps)
    faces = find_faces(d / "talk.avi", d, 32)
    span = 8
    items = [
        ClipItem(faces.crops, int(truth.levels[s]), s, s + span)
        for s in range(1, len(truth.levels) - span + 1, 2)
        if truth.levels[s] == truth.levels[s + span - 1]
    ]
    train = extract_features(encoder, items, stride=2)
    probe = train_probe(train.features[:, 0], train.labels, len(CLASSES), epochs=50, batch_size=16, lr=1e-3)
    probe_path = save_probe(probe, d / "probe.safetensors", meta)
    return {
        "probe": str(probe_path),
        "encoder": str(encoder_path),
        "dir": d,
        "video": d / "talk.avi",
        "encoder_model": encoder,
        "faces": faces,
        "meta": meta,
    }


def test_windows_are_the_probe_pipelines_clips(predictor):
    # A window must reach the encoder as the clip loader's centred clip of the same frames
    # (same frames, decoding and normalisation); the torch loader is the reference decoder.
    faces, meta = predictor["faces"], predictor["meta"]
    starts, offsets, span = window_plan(meta, len(faces.has_face), faces.fps)
    assert span == 8 and offsets.tolist() == [0, 2, 4, 6] and starts[:3].tolist() == [0, 4, 8]
    picked = starts[[0, 5, -1]]
    items = [ClipItem(faces.crops, 0, int(s), int(s) + span) for s in picked]
    loader = make_loader(
        items=items,
        batch_size=len(items),
        num_frames=4,
        stride=2,
        random_start=False,
        shuffle=False,
        with_regions=False,
        backend="torch",
    )
    theirs = next(iter(loader))["clip"]
    ours = torch.stack([normalise_clip(torch.from_numpy(c)) for c in window_clips(faces.crops, picked, offsets)])
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    features = encode_windows(predictor["encoder_model"], faces.crops, picked, offsets, batch_size=2)
    torch.testing.assert_close(features, predictor["encoder_model"].forward_features(theirs), atol=1e-5, rtol=1e-5)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mean_level(rows, start, end):
    """Mean predicted class index of the windows lying inside [start, end] seconds."""
    inside = [CLASSES.index(r["level"]) for r in rows if float(r["start_s"]) >= start and float(r["end_s"]) <= end]
    assert inside, f"no window inside {start}–{end} s"
    return float(np.mean(inside))


def test_predicted_timeline_recovers_the_segments_order(predictor, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(predictor["video"]), "--probe", predictor["probe"], "--out-dir", str(out), *CPU]) == 0
    printed = capsys.readouterr().out
    assert "windows" in printed and "timeline.csv" in printed

    rows = _rows(out / "timeline.csv")
    assert list(rows[0]) == ["start_s", "end_s", "face_fraction", "level", "confidence", *[f"p_{c}" for c in CLASSES]]
    # 90 frames, windows of 8 frames every 4: starts 0, 4, …, 80.
    assert len(rows) == 21
    assert float(rows[1]["start_s"]) == pytest.approx(4 / 15, abs=1e-3)
    assert float(rows[0]["end_s"]) == pytest.approx(8 / 15, abs=1e-3)
    assert all(r["level"] in CLASSES for r in rows)  # a face everywhere: nothing is no_face
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in CLASSES]
        assert sum(probs) == pytest.approx(1, abs=1e-3)
        assert float(r["confidence"]) == pytest.approx(max(probs), abs=1e-4)
        assert r["level"] == CLASSES[int(np.argmax(probs))]
    first, middle, last = (_mean_level(rows, k * SECONDS, (k + 1) * SECONDS) for k in range(3))
    assert first > middle + 1 and last > middle + 1, (first, middle, last)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 90 and summary["windows"] == 21 and summary["no_face_windows"] == 0
    assert sum(summary["level_share"].values()) == pytest.approx(1, abs=1e-3)
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frames_without_a_face_are_reported_not_guessed(predictor, tmp_path):
    face = render_segments([3], SECONDS, size=SIZE, seed=9).rendered.frames
    grey = np.random.default_rng(0).integers(100, 140, face.shape, dtype=np.uint8)  # no face: flat noise
    write_video(tmp_path / "leaves.avi", np.concatenate([face, grey]), 15)
    config = PredictConfig(probe=predictor["probe"], out_dir=str(tmp_path / "half"), device="cpu", dtype="fp32")
    summary = run_predict(tmp_path / "leaves.avi", config, progress=False)
    rows = _rows(tmp_path / "half" / "timeline.csv")
    for r in rows:
        face_fraction = float(r["face_fraction"])
        if float(r["end_s"]) <= SECONDS:
            assert face_fraction == 1 and r["level"] in CLASSES
        if float(r["start_s"]) >= SECONDS:  # the face has left
            assert face_fraction == 0 and r["level"] == NO_FACE
            assert r["confidence"] == "" and all(r[f"p_{c}"] == "" for c in CLASSES)
        assert (r["level"] == NO_FACE) == (face_fraction < config.min_face)
    assert 0 < summary["no_face_windows"] < summary["windows"]
    assert summary["segments"][-1][2] == NO_FACE

    # No face anywhere: the face pipeline writes nothing, and every window is no_face.
    write_video(tmp_path / "empty.avi", grey, 15)
    config = PredictConfig(probe=predictor["probe"], out_dir=str(tmp_path / "none"), device="cpu", dtype="fp32")
    summary = run_predict(tmp_path / "empty.avi", config, progress=False)
    assert summary["scored_windows"] == 0 and summary["windows"] == summary["no_face_windows"] > 0
    assert {r["level"] for r in _rows(tmp_path / "none" / "timeline.csv")} == {NO_FACE}
    assert (tmp_path / "none" / "timeline.png").is_file()


def test_demo_recording_by_default(predictor, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict_module, "DEMO_SECONDS", 1.0)  # 60 frames instead of 240: the test's time
    out = tmp_path / "demo"
    assert (
        main(
            [
                "--probe",
                predictor["probe"],
                "--checkpoint",
                predictor["encoder"],
                "--out-dir",
                str(out),
                "--hop",
                "1.0",
                *CPU,
            ]
        )
        == 0
    )
    assert "true segments of the demo recording" in capsys.readouterr().out
    for name in ("demo.avi", "timeline.csv", "timeline.png", "summary.json", "config.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth"] == [[0.0, 1.0, 3], [1.0, 2.0, 1], [2.0, 3.0, 0], [3.0, 4.0, 3]]
    assert summary["frames"] == 60 and summary["scored_windows"] > 0
    starts = [float(r["start_s"]) for r in _rows(out / "timeline.csv")]
    assert starts[:3] == [0.0, 1.0, 2.0]  # --hop 1.0 at 15 fps


def test_regression_probe_gives_scores_in_unit_range(predictor, tmp_path):
    # An EmotiW-style probe: one score per window, clamped to [0, 1]; windows below
    # min_face stay unscored. The last third of the frames lose their face here.
    faces = predictor["faces"]
    faces = Faces(faces.crops, np.arange(len(faces.has_face)) < 60, faces.fps)
    meta = dict(predictor["meta"], task="emotiw", kind="regression", class_names=[])
    starts, offsets, _ = window_plan(meta, len(faces.has_face), faces.fps, hop=0.4)
    features = encode_windows(predictor["encoder_model"], faces.crops, starts, offsets)
    torch.manual_seed(0)
    probe = LinearProbe(features.shape[1], 1, "none").eval()
    with torch.no_grad():  # raw scores centred on 0.5 with std 0.5: some beyond [0, 1], to be clamped
        raw = probe(features)[:, 0]
        probe.linear.weight.mul_(0.5 / raw.std())
        probe.linear.bias.add_(0.5 - probe(features)[:, 0].mean())
    timeline = score_windows(predictor["encoder_model"], probe, meta, faces, hop=0.4, min_face=0.75)
    assert timeline.scores.shape == (len(timeline.start_s),)
    assert np.allclose(np.diff(timeline.start_s), 6 / 15)  # --hop 0.4 s = 6 frames at 15 fps
    scored = timeline.scored
    np.testing.assert_array_equal(scored, timeline.face_fraction >= 0.75)
    assert scored.any() and not scored.all()
    assert ((timeline.scores[scored] >= 0) & (timeline.scores[scored] <= 1)).all()
    assert len(np.unique(timeline.scores[scored])) > 2

    write_timeline_csv(timeline, tmp_path / "timeline.csv")
    rows = _rows(tmp_path / "timeline.csv")
    assert list(rows[0]) == ["start_s", "end_s", "face_fraction", "score"]
    assert [r["score"] == NO_FACE for r in rows] == (~scored).tolist()
    summary = timeline_summary(timeline)
    assert summary["mean_score"] == pytest.approx(float(timeline.scores[scored].mean()), abs=1e-4)
    assert summary["segments"][0][2] == "scored" and summary["segments"][-1][2] == NO_FACE
    save_timeline_png(timeline, tmp_path / "timeline.png", truth=[(0.0, 2.0, 3)])
    assert (tmp_path / "timeline.png").stat().st_size > 0


def test_window_starts():
    assert window_starts(20, 8, 4).tolist() == [0, 4, 8, 12]
    assert window_starts(8, 8, 3).tolist() == [0]
    with pytest.raises(ValueError, match="fewer than one window"):
        window_starts(7, 8, 4)


@pytest.mark.parametrize(
    "field, value, message",
    [("hop", -1.0, "hop"), ("min_face", 0.0, "min_face"), ("batch_size", 0, "batch_size"), ("dtype", "fp16", "dtype")],
)
def test_bad_settings(field, value, message):
    with pytest.raises(ValueError, match=message):
        PredictConfig(**{field: value})


def test_bad_inputs_give_clear_errors(predictor, tmp_path, capsys):
    args = ["--probe", predictor["probe"], "--out-dir", str(tmp_path / "out"), *CPU]

    def error(*argv):
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    assert "no video" in error(str(tmp_path / "missing.avi"), *args)
    assert "error:" in error(str(predictor["video"]), "--probe", str(tmp_path / "nope.safetensors"), *CPU)
    (tmp_path / "text.avi").write_text("not a video")
    assert "unreadable" in error(str(tmp_path / "text.avi"), *args)
    short = render_segments([3], 0.4, size=SIZE, seed=9)  # 6 frames, one window needs 8
    write_video(tmp_path / "short.avi", short.rendered.frames, 15)
    assert "fewer than one window" in error(str(tmp_path / "short.avi"), *args)

    torch.manual_seed(1)  # same architecture, other weights: not the probe's encoder
    other = save_encoder(FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4)), tmp_path / "other.safetensors")
    err = error(str(predictor["video"]), *args, "--checkpoint", str(other))
    assert "was trained on encoder" in err
    assert not (tmp_path / "out" / "timeline.csv").exists()


def test_probe_naming_no_encoder_file_needs_a_checkpoint(predictor, tmp_path, capsys):
    probe, meta = load_probe(predictor["dir"] / "probe.safetensors")
    save_probe(probe, tmp_path / "probe.safetensors", {**meta, "encoder": "random init (fmae_vit_tiny)"})
    assert main([str(predictor["video"]), "--probe", str(tmp_path / "probe.safetensors"), *CPU]) == 2
    assert "give the encoder with --checkpoint" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "Examples" in text and "--hop" in text and "--min-face" in text and "VIDEO" in text.upper()
