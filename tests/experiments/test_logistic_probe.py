"""The evidence's probe (:mod:`fmae.experiments.logistic_probe`)."""

import numpy as np

from fmae.experiments import logistic_probe
from fmae.experiments.logistic_probe import probe_accuracy


def test_the_probe_reads_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 20)
    groups = [f"g{i // 4}" for i in range(40)]
    x = rng.normal(size=(40, 2, 5))
    x[:, :, 0] += 4 * y[:, None]
    out = probe_accuracy(x, y, groups, x + 0.1 * rng.normal(size=x.shape), y)
    assert out["accuracy"] == 1.0 and len(out["correct"]) == 40 and out["C"] in logistic_probe.PROBE_CS
    noise = probe_accuracy(
        rng.normal(size=(40, 1, 5)), y, groups, rng.normal(size=(200, 1, 5)), rng.integers(0, 2, 200)
    )
    assert 0.3 < noise["accuracy"] < 0.7
