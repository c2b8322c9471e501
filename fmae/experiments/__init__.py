"""The experiments behind ``python -m fmae.ablate``, one module a job:

- :mod:`~fmae.experiments.sweeps`: the paper's ablation sweeps (masking ratio, stride,
  strategy × losses): their settings, cells, tables and plots.
- :mod:`~fmae.experiments.evidence`: does pre-training help at all? Its settings and its run
  (pre-trained vs randomly initialised encoders vs controls, over seeds).
- :mod:`~fmae.experiments.cells`: the one cell runner both use: pre-train (resuming), measure,
  write ``result.json``; a finished cell is read, not run again.
- :mod:`~fmae.experiments.tasks`: the evidence's probing tasks (the synthetic dynamics set, the
  real clip cut in time) and the loader of their clips.
- :mod:`~fmae.experiments.logistic_probe`: the evidence's probe (cross-validated logistic regression).
- :mod:`~fmae.experiments.controls`: the same probe on non-encoder features and the majority class.
- :mod:`~fmae.experiments.coverage`: what each masking strategy hides of the face.
- :mod:`~fmae.experiments.report`: the evidence's summary per task and ``evidence.md``, with the
  intervals of :mod:`fmae.downstream.intervals`.
"""
