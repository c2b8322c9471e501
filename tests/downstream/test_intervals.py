"""The evidence's intervals (:mod:`fmae.downstream.intervals`), on hand-worked examples."""

import numpy as np
import pytest

from fmae.downstream.intervals import cluster_bootstrap, paired_bootstrap, t_interval, wilson_interval


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
