"""Evaluation metrics and per-run reports: numbers from scikit-learn, pictures from matplotlib.

- :func:`classification_metrics`: accuracy, precision/recall/F1 averaged both *weighted*
  (by class support, as the paper's tables; weighted recall equals accuracy) and
  *macro* (every class counts the same, which shows what imbalance hides), a per-class
  report and the confusion matrix;
- :func:`regression_metrics`: MSE (EmotiW's metric), MAE;
- :func:`save_confusion_png`: the confusion matrix as a picture;
- :func:`write_report`: a run's metrics as ``<name>.json`` and a readable ``<name>.md``;
- :func:`write_predictions`: a probe's predictions, one CSV row per video.

Metric dicts hold plain Python numbers, lists and strings only, so they go to JSON as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn import metrics as skm


def _as_1d(values: Any, name: str, kind: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if kind == "int":
        if array.dtype.kind not in "iub":
            raise TypeError(f"{name} must hold integer class ids, got dtype {array.dtype}")
        return array.astype(np.int64)
    if array.dtype.kind not in "iubf":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} vs {y_pred.shape[0]}")


def classification_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Classification metrics of predicted class ids against the truth.

    Args:
        y_true, y_pred: int ``[N]`` class ids in ``[0, num_classes)`` (lists, numpy
            arrays or tensors).
        num_classes: ``K``; default ``max(y_true, y_pred) + 1``. Classes absent from
            both still get a row and column (zeros), so matrices of runs compare.
        class_names: ``K`` names for the report; default ``"0" … "K-1"``.

    Returns:
        ``accuracy``; ``precision``/``recall``/``f1`` as ``{"weighted": x, "macro": x}``
        (a class never predicted has precision 0, not a warning); ``per_class``: one
        ``{"name", "precision", "recall", "f1", "support"}`` per class;
        ``confusion_matrix``: ``K×K`` counts, rows true, columns predicted; ``support``
        (``N``), ``num_classes``, ``class_names``.
    """
    y_true, y_pred = _as_1d(y_true, "y_true", "int"), _as_1d(y_pred, "y_pred", "int")
    _check_pair(y_true, y_pred)
    if min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("class ids must be >= 0")
    k = int(max(y_true.max(), y_pred.max())) + 1 if num_classes is None else int(num_classes)
    if max(y_true.max(), y_pred.max()) >= k:
        raise ValueError(f"class id {int(max(y_true.max(), y_pred.max()))} is out of range for {k} classes")
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    labels = list(range(k))
    result: dict[str, Any] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for average in ("weighted", "macro"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        for key, value in (("precision", p), ("recall", r), ("f1", f)):
            result.setdefault(key, {})[average] = float(value)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    result["per_class"] = [
        {"name": names[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i in labels
    ]
    result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    result.update(support=int(y_true.size), num_classes=k, class_names=names)
    return result


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """``{"mse", "mae", "support"}`` of float ``[N]`` predictions against the truth."""
    y_true, y_pred = _as_1d(y_true, "y_true", "float"), _as_1d(y_pred, "y_pred", "float")
    _check_pair(y_true, y_pred)
    return {
        "mse": float(skm.mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "support": int(y_true.size),
    }


def save_confusion_png(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Draw a ``K×K`` confusion matrix (rows true, columns predicted) with counts in the
    cells and colours by row share, so a rare class is as readable as a common one."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise ValueError(f"matrix must be K×K for {len(class_names)} class names, got shape {counts.shape}")
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = counts.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k), dpi=120)
    try:
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j, i, str(counts[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black"
                )
        ax.set_xticks(range(k), class_names, rotation=30, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


COMPARED = "random_init"
"""The report entry that :func:`report_markdown` shows as a second column: the same
metrics of the same probe on a randomly initialised encoder."""


PAIRED = "pretrained_vs_random_init"
"""The report entry that says whether the probe's lead over its random init could be chance:
``diff`` (accuracy, or for regression the MSE that pre-training saved; > 0: pre-training
better), its 95 % ``low`` and ``high`` from resampling the test videos (the same videos for
both encoders) and ``p_le_0``, the share of resamples without a lead
(:func:`fmae.downstream.intervals.paired_bootstrap`)."""


def paired_sentence(report: dict[str, Any]) -> str:
    """The :data:`PAIRED` entry of ``report`` in words ("" without one)."""
    paired = report.get(PAIRED)
    if not paired:
        return ""
    what = "accuracy gained" if "accuracy" in report else "MSE saved"
    return (
        f"{what} by pre-training over random init {paired['diff']:+.4f} (95 % interval {paired['low']:+.4f} to "
        f"{paired['high']:+.4f} over resampled test videos; no gain in {paired['p_le_0']:.0%} of the resamples)"
    )


def report_markdown(report: dict[str, Any], title: str = "Results") -> str:
    """A Markdown summary of a report: its scalar entries (and ``{"weighted", "macro"}``
    pairs) in one table, then the per-class table and confusion matrix when present.

    When the report holds :data:`COMPARED` (a dict of the same metrics), the table gets
    a ``random init`` column beside the values, filled where that dict has the entry."""
    other = report.get(COMPARED) if isinstance(report.get(COMPARED), dict) else None
    if other is None:
        head = ["| metric | value |", "|---|---|"]
    else:
        head = ["| metric | value | random init |", "|---|---|---|"]
    lines = [f"# {title}", "", *head]

    def row(name: str, value: Any, beside: Any) -> str:
        if other is None:
            return f"| {name} | {_number(value)} |"
        return f"| {name} | {_number(value)} | {'' if beside is None else _number(beside)} |"

    for key, value in report.items():
        theirs = other.get(key) if other is not None else None
        if isinstance(value, dict) and set(value) == {"weighted", "macro"}:
            for average in ("weighted", "macro"):
                lines.append(
                    row(f"{key} ({average})", value[average], theirs.get(average) if isinstance(theirs, dict) else None)
                )
        elif isinstance(value, (int, float, str)):
            lines.append(row(key, value, theirs if isinstance(theirs, (int, float, str)) else None))
    if other is not None:
        lines += [
            "",
            "random init: the same probe on the same clips, from an encoder of the same architecture that saw "
            f"no pre-training ({other.get('encoder', 'randomly initialised')}).",
        ]
        if PAIRED in report:
            lines += ["", paired_sentence(report)[0].upper() + paired_sentence(report)[1:] + "."]
    if "per_class" in report:
        lines += ["", "## Per class", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += [
            f"| {c['name']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
            for c in report["per_class"]
        ]
    if "confusion_matrix" in report:
        names = report.get("class_names") or [str(i) for i in range(len(report["confusion_matrix"]))]
        lines += [
            "",
            "## Confusion matrix (rows true, columns predicted)",
            "",
            "| true \\ predicted | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        lines += [
            f"| {name} | " + " | ".join(str(v) for v in row) + " |"
            for name, row in zip(names, report["confusion_matrix"])
        ]
    return "\n".join(lines) + "\n"


def write_report(
    report: dict[str, Any], out_dir: str | Path, name: str = "metrics", title: str = "Results"
) -> tuple[Path, Path]:
    """Write ``out_dir/<name>.json`` (the whole report) and ``out_dir/<name>.md``
    (:func:`report_markdown`); returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path.write_text(report_markdown(report, title))
    return json_path, md_path


def write_predictions(
    path: Path, videos: list[str], labels: torch.Tensor, scores: torch.Tensor, class_names: list[str]
) -> None:
    """One row per video: its label and the prediction with every class's probability
    (``class_names`` given), or its score."""
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if class_names:
            w.writerow(["video", "label", "prediction", "confidence", *[f"p_{n}" for n in class_names]])
            for video, y, probs in zip(videos, labels.tolist(), scores.tolist()):
                best = max(range(len(probs)), key=probs.__getitem__)
                w.writerow([video, y, best, f"{probs[best]:.4f}", *[f"{q:.4f}" for q in probs]])
        else:
            w.writerow(["video", "label", "score"])
            w.writerows(
                [video, f"{y:.4f}", f"{s:.4f}"] for video, y, s in zip(videos, labels.tolist(), scores.tolist())
            )
