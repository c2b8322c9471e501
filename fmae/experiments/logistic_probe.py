"""The evidence's linear probe, the same for every encoder and control: standardised features,
an L2-regularised logistic regression whose strength is chosen by group-wise cross-validation
on the training items, refit on all of them; several clips per item are averaged at test time.

Not :mod:`fmae.downstream.probe` (the paper's probe, trained by gradient descent on a data set):
this one fits in closed form on features already extracted, so every arm gets the same fit.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

PROBE_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Inverse L2 strengths the probe's cross-validation chooses from."""


def _folds(y: np.ndarray, groups: np.ndarray, most: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group-wise, class-stratified folds (no group on both sides); empty when the smallest
    class has fewer than two groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    k = min(most, per_class)
    if k < 2:
        return []
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(y, y, groups))


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(x, y)


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, cs: Sequence[float] = PROBE_CS):
    """A linear probe on ``x`` ``[N, D]``: standardised features and a logistic regression
    whose ``C`` (from ``cs``) has the best mean accuracy over three group-wise folds (the
    smaller on a tie), refit on every row. Returns ``(fitted pipeline, C)``."""
    from threadpoolctl import threadpool_limits

    x, y, groups = np.asarray(x, np.float64), np.asarray(y), np.asarray(groups, dtype=str)
    folds = _folds(y, groups)
    best, best_c = -1.0, 1.0
    # One BLAS thread: small fits gain nothing from more, and on a shared machine they spin against each other.
    with threadpool_limits(1):
        if folds:
            for c in cs:
                score = float(np.mean([(_fit(x[tr], y[tr], c).predict(x[va]) == y[va]).mean() for tr, va in folds]))
                if score > best + 1e-12:
                    best, best_c = score, c
        return _fit(x, y, best_c), best_c


def probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, train_groups: Sequence[Any], test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, Any]:
    """Train :func:`fit_probe` on ``train_x`` ``[I, K, D]`` (``K`` clips per item, each a
    row) and score ``test_x`` ``[J, K, D]`` by the class probabilities averaged over each
    item's clips. Returns ``accuracy``, ``correct`` and ``predicted`` (per test item), ``C``."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    k = train_x.shape[1]
    rows = train_x.reshape(-1, train_x.shape[-1])
    model, c = fit_probe(rows, np.repeat(np.asarray(train_y), k), np.repeat(np.asarray(train_groups, str), k))
    prob = model.predict_proba(test_x.reshape(-1, test_x.shape[-1])).reshape(test_x.shape[0], test_x.shape[1], -1)
    predicted = model.classes_[prob.mean(1).argmax(1)]
    correct = (predicted == np.asarray(test_y)).astype(int)
    return {"accuracy": float(correct.mean()), "correct": correct.tolist(), "predicted": predicted.tolist(), "C": c}
