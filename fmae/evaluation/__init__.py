"""How well a pre-trained model reconstructs the masked cubes of held-out clips, overall and
per facial region, beside naive predictors that see the same visible cubes.

- :mod:`fmae.evaluation.baselines`: the naive predictors (:data:`BASELINES`,
  :func:`baseline_predictions`);
- :mod:`fmae.evaluation.error`: the measure, per-region masked-cube error of the model,
  the baselines and the mean face (:func:`evaluate_reconstruction`, :func:`mean_cubes`);
- :mod:`fmae.evaluation.report`: ``reconstruction.md`` (:func:`markdown_report`) and the
  logged scalars (:func:`flat_scalars`);
- :mod:`fmae.evaluation.held_out`: what pre-training uses, its held-out clips evaluated at
  every checkpoint (:func:`held_out_set`, :class:`HeldOut`);
- :mod:`fmae.evaluation.evaluate`: the run of ``python -m fmae.evaluate``
  (:class:`EvaluateConfig`, :func:`run_evaluate`).
"""

from fmae.evaluation.baselines import BASELINES, baseline_predictions, nearest_visible_index
from fmae.evaluation.error import REGIONS, evaluate_reconstruction, mean_cubes, target_cubes
from fmae.evaluation.evaluate import EvaluateConfig, run_evaluate
from fmae.evaluation.held_out import HeldOut, held_out_set
from fmae.evaluation.report import flat_scalars, markdown_report

__all__ = [
    "BASELINES",
    "REGIONS",
    "EvaluateConfig",
    "HeldOut",
    "baseline_predictions",
    "evaluate_reconstruction",
    "flat_scalars",
    "held_out_set",
    "markdown_report",
    "mean_cubes",
    "nearest_visible_index",
    "run_evaluate",
    "target_cubes",
]
