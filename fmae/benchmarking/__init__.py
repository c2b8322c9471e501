"""``python -m fmae.bench``: how fast the pre-training step runs here (``bench step``:
:mod:`fmae.benchmarking.step`) and every check that needs a GPU (``bench gpu``:
:mod:`fmae.benchmarking.gpu`, one module per check). Both time calls through
:mod:`fmae.benchmarking.timing`, as the pytest benchmarks (``benchmarks/``) do, and take the
attention shapes they time from :mod:`fmae.benchmarking.shapes`."""
