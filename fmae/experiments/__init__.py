"""``python -m fmae.ablate``: the paper's ablation sweeps (:mod:`fmae.experiments.sweeps`) and
the question whether pre-training helps at all (:mod:`fmae.experiments.evidence`)."""
