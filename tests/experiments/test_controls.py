"""The evidence's controls (:mod:`fmae.experiments.controls`)."""

import numpy as np

from fmae.experiments import controls, tasks


def test_controls_see_the_clips_the_encoder_sees(toy_evidence):
    config = toy_evidence()
    task = tasks.dynamics_task(config)
    stats_ = controls.clip_statistics(task.train[:3], 2, config)
    assert stats_["mean colour"].shape == (3, 2, 3) and stats_["pixel mean over time"].shape == (3, 2, 3 * 8 * 8)
    assert not np.array_equal(stats_["motion energy"][:, 0], stats_["motion energy"][:, 1])  # two different starts
