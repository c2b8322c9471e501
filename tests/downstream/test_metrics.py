import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fmae.downstream.metrics import (
    classification_metrics,
    regression_metrics,
    report_markdown,
    save_confusion_png,
    write_report,
)

# 8 samples, 3 classes; worked out by hand below.
TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
PRED = [0, 0, 1, 1, 2, 2, 2, 0]


def test_classification_against_hand_computed_values():
    m = classification_metrics(TRUE, PRED, class_names=["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    # per class: precision = diagonal / column sum, recall = diagonal / row sum
    prec = [2 / 3, 1 / 2, 2 / 3]
    rec = [2 / 3, 1 / 2, 2 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(prec, rec)]
    support = [3, 2, 3]
    for c, row in enumerate(m["per_class"]):
        assert row["name"] == "abc"[c] and row["support"] == support[c]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((prec[c], rec[c], f1[c]))
    assert m["precision"]["macro"] == pytest.approx(sum(prec) / 3)
    assert m["precision"]["weighted"] == pytest.approx(sum(p * s for p, s in zip(prec, support)) / 8)
    assert m["f1"]["weighted"] == pytest.approx(sum(f * s for f, s in zip(f1, support)) / 8)
    # weighted recall is accuracy (why the paper's tables show equal numbers)
    assert m["recall"]["weighted"] == pytest.approx(m["accuracy"])
    assert (m["support"], m["num_classes"], m["class_names"]) == (8, 3, ["a", "b", "c"])
    json.dumps(m)  # plain types only


def test_absent_classes_keep_their_rows_and_never_predicted_is_zero_precision():
    m = classification_metrics(torch.tensor([0, 0, 1]), np.array([0, 0, 0]), num_classes=4)
    assert m["confusion_matrix"] == [[2, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m["per_class"][1]["precision"] == 0.0 and m["per_class"][3]["support"] == 0
    assert m["precision"]["macro"] == pytest.approx((2 / 3) / 4)
    assert m["class_names"] == ["0", "1", "2", "3"]


def test_regression_against_hand_computed_values():
    m = regression_metrics([0.0, 0.33, 0.66, 1.0], torch.tensor([0.1, 0.33, 0.5, 0.7]))
    assert m["mse"] == pytest.approx((0.01 + 0 + 0.0256 + 0.09) / 4)
    assert m["mae"] == pytest.approx((0.1 + 0 + 0.16 + 0.3) / 4)
    assert m["support"] == 4


@pytest.mark.parametrize(
    "bad, err",
    [
        (dict(y_true=[0, 1], y_pred=[0]), ValueError),
        (dict(y_true=[], y_pred=[]), ValueError),
        (dict(y_true=[0, 5], y_pred=[0, 1], num_classes=4), ValueError),
        (dict(y_true=[0, -1], y_pred=[0, 1]), ValueError),
        (dict(y_true=[0.5, 1.0], y_pred=[0, 1]), TypeError),
        (dict(y_true=[0, 1], y_pred=[0, 1], class_names=["x"]), ValueError),
        (dict(y_true=[[0, 1]], y_pred=[[0, 1]]), ValueError),
    ],
)
def test_classification_rejects_bad_input(bad, err):
    with pytest.raises(err):
        classification_metrics(**bad)


def test_regression_rejects_bad_input():
    with pytest.raises(ValueError):
        regression_metrics([0.1, 0.2], [0.1])
    with pytest.raises(TypeError):
        regression_metrics(["a"], ["b"])


def test_confusion_png_and_reports(tmp_path):
    m = classification_metrics(TRUE, PRED, class_names=["a", "b", "c"])
    png = save_confusion_png(m["confusion_matrix"], m["class_names"], tmp_path / "sub" / "cm.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.size) > 100
    with pytest.raises(ValueError):
        save_confusion_png([[1, 2]], ["a", "b"], tmp_path / "bad.png")

    report = {"task": "demo", **m}
    json_path, md_path = write_report(report, tmp_path, "run", "Demo")
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert md == report_markdown(report, "Demo") and md.startswith("# Demo")
    assert "| accuracy | 0.6250 |" in md and "| f1 (macro) |" in md and "| task | demo |" in md
    assert "| a | 2 | 1 | 0 |" in md  # the confusion matrix's first row
    assert not math.isnan(report["f1"]["weighted"])


def test_report_shows_the_random_init_metrics_beside():
    mine = classification_metrics(TRUE, PRED, class_names=["a", "b", "c"])
    theirs = classification_metrics(TRUE, [0] * 8, num_classes=3, class_names=["a", "b", "c"])
    md = report_markdown(
        {
            "task": "demo",
            **mine,
            "majority_accuracy": 0.375,
            "random_init": {"encoder": "random init, seed 0", **theirs},
        },
        "Demo",
    )
    assert "| metric | value | random init |" in md
    assert "| accuracy | 0.6250 | 0.3750 |" in md
    assert f"| f1 (macro) | {mine['f1']['macro']:.4f} | {theirs['f1']['macro']:.4f} |" in md
    assert "| task | demo |  |" in md and "| majority_accuracy | 0.3750 |  |" in md  # only the probe's own
    assert "random init, seed 0" in md
    # Regression reports compare their MSE the same way; without the entry the table keeps two columns.
    md = report_markdown(
        {**regression_metrics([0.0, 1.0], [0.5, 0.5]), "random_init": regression_metrics([0.0, 1.0], [0.0, 0.0])}
    )
    assert "| mse | 0.2500 | 0.5000 |" in md
    assert "| metric | value |\n" in report_markdown(regression_metrics([0.0, 1.0], [0.5, 0.5]))
