"""What an evaluation writes and logs: ``reconstruction.md`` (:func:`markdown_report`) and
the flat scalars that pre-training logs to TensorBoard and ``metrics.jsonl``
(:func:`flat_scalars`), from :func:`fmae.evaluation.error.evaluate_reconstruction`'s result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmae.evaluation.baselines import BASELINES
from fmae.evaluation.error import REGIONS


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def markdown_report(result: dict[str, Any], checkpoint: str | Path = "") -> str:
    """``reconstruction.md``: the model and every baseline (rows), overall and per region
    (columns), with the clips, masked cubes, ratio, strategy and checkpoint."""
    rows = [("model", result["model"])] + [(name, result["baselines"][name]) for name in BASELINES]
    if "mean_face" in result:
        rows.append(("mean_face", result["mean_face"]))
    keys = ("all", *REGIONS)
    lines = [
        "# Masked-cube reconstruction error",
        "",
        f"- checkpoint: `{checkpoint}`" if checkpoint else "- checkpoint: (not given)",
        f"- clips: {result['clips']}, masked cubes: {result['masked_cubes']}",
        f"- the model's error varies between clips by {_cell(result['model_spread']['clip_std'])} (standard "
        f"deviation); the standard error of its `all` is {_cell(result['model_spread']['all_sem'])}",
        f"- ratio: {result['ratio']:g}, strategy: {result['strategy']}",
        "",
        "Mean squared error per masked cube, in the space of the training targets (pixels, or per-cube "
        "normalised cubes with norm_pix_loss); a cube counts for the region that labels its token; — : no "
        "masked cube in that region. The baselines see the same visible cubes as the model"
        + ("; mean_face predicts each cube by the training clips' mean cube there." if "mean_face" in result else "."),
        "",
        "| predictor | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    lines += [f"| {name} | " + " | ".join(_cell(row[k]) for k in keys) + " |" for name, row in rows]
    return "\n".join(lines) + "\n"


def flat_scalars(result: dict[str, Any], prefix: str = "heldout") -> dict[str, float | None]:
    """``{"<prefix>/<region>": …}`` of the model, ``<prefix>/all_sem`` (the standard error of its
    ``all`` over the clips), and ``{"<prefix>/<baseline>/<region>": …}``
    of every baseline (``all`` among the regions), for TensorBoard and ``metrics.jsonl``."""
    values = {f"{prefix}/{k}": v for k, v in result["model"].items()}
    values[f"{prefix}/all_sem"] = result["model_spread"]["all_sem"]
    for name in BASELINES:
        values.update({f"{prefix}/{name}/{k}": v for k, v in result["baselines"][name].items()})
    return values
