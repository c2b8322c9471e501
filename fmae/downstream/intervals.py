"""95 % intervals of accuracies: over seeds (Student's t), over test items (Wilson's binomial
interval, and a cluster bootstrap that resamples whole groups of test items, for one
accuracy and for the paired difference of two)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of the mean over ``values`` (``n - 1``
    degrees of freedom); ``low`` and ``high`` are NaN for fewer than two values."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion ``successes / n``."""
    from scipy import stats

    if n < 1:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _cluster_weights(clusters: Sequence[Any], reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``([reps, m] resampling counts of the m clusters, [n] cluster index of each item)``."""
    _, index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    m = int(index.max()) + 1
    rng = np.random.default_rng(seed)
    return rng.multinomial(m, np.full(m, 1.0 / m), size=reps).astype(np.float64), index


def cluster_bootstrap(
    correct: np.ndarray, clusters: Sequence[Any], reps: int = 4000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """``(accuracy, low, high)``: percentile interval of the accuracy when whole clusters of
    test items are resampled. ``correct``: ``[n]`` or ``[seeds, n]`` (averaged over seeds)."""
    c = np.atleast_2d(np.asarray(correct, np.float64)).mean(0)
    weights, index = _cluster_weights(clusters, reps, seed)
    per = np.bincount(index, c)
    size = np.bincount(index).astype(np.float64)
    samples = (weights @ per) / (weights @ size)
    lo, hi = np.quantile(samples, [0.5 - level / 2, 0.5 + level / 2])
    return float(c.mean()), float(lo), float(hi)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, clusters: Sequence[Any], reps: int = 4000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Accuracy of ``a`` minus that of ``b`` (``[n]`` or ``[seeds, n]`` correct flags on the
    same test items, averaged over seeds), with a percentile interval from resampling
    whole clusters (the same for both) and ``p_le_0``, the share of resamples in which
    ``a`` does not beat ``b``."""
    d = np.atleast_2d(np.asarray(a, np.float64)).mean(0) - np.atleast_2d(np.asarray(b, np.float64)).mean(0)
    weights, index = _cluster_weights(clusters, reps, seed)
    samples = (weights @ np.bincount(index, d)) / (weights @ np.bincount(index).astype(np.float64))
    lo, hi = np.quantile(samples, [0.5 - level / 2, 0.5 + level / 2])
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi), "p_le_0": float((samples <= 0).mean())}
