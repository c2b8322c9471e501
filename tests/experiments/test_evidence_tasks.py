"""The evidence's tasks (:mod:`fmae.experiments.tasks`): the real clip's parts and windows, and
the dynamics task's pool of other people for pre-training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmae.data import SyntheticConfig, daisee_items
from fmae.data.synthetic import sample_appearance
from fmae.experiments import tasks
from fmae.experiments.evidence import EvidenceConfig, cell_name
from fmae.experiments.tasks import part_windows, real_parts


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
    items, blocks = part_windows(Path("x.avi"), 1, 100, span, 4)
    assert all(it.stop - it.start == span and it.stop <= 100 for it in items) and len(items) == 22
    assert blocks[0] == blocks[3] == "x:0" and blocks[4] == "x:1"
    with pytest.raises(ValueError, match="too short"):
        real_parts(250, 24.0, 120, 0.5)


def test_a_pre_training_pool_of_other_people(tmp_path):
    settings = dict(tasks="dynamics", img_size=32, subjects=4, video_frames=8, views=1, data_dir=str(tmp_path))
    own = tasks.dynamics_task(EvidenceConfig(**settings))
    config = EvidenceConfig(**settings, pretrain_people=6)
    task = tasks.dynamics_task(config)
    assert (task.train, task.test) == (own.train, own.test)  # the probe reads the same videos
    pool = daisee_items(task.pretrain_root, "Train")
    assert task.pretrain_root != own.pretrain_root and len(pool) == 6
    assert len({Path(it.path).parent.parent.name for it in pool}) == 6  # six people, one video each
    assert "pool of 6 other people" in task.facts["pretraining_saw"]
    # Other people: no look of the pool is a look of the probed set; the cells are told apart.
    pool_config, probed = tasks.dynamics_pool_config(config), tasks.dynamics_config(config)

    def looks(c: SyntheticConfig) -> set[bytes]:
        return {sample_appearance(np.random.default_rng([c.seed, 0, s])).skin.tobytes() for s in range(c.num_subjects)}

    assert not looks(pool_config) & looks(probed)
    assert cell_name(task, "facial", 0, config) != cell_name(own, "facial", 0, config)
