"""``python -m fmae.bench``: how fast the pre-training step runs here (``bench step``:
:mod:`fmae.benchmarking.step`) and every check that needs a GPU (``bench gpu``)."""
