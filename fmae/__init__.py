"""FMAE: a facial masked autoencoder for self-supervised engagement recognition.

Data flows one way: ``data`` → ``face`` → ``masking`` → ``model`` → ``losses`` →
``pretraining`` → ``downstream``; ``fmae.ops`` (the kernels) sits below all of them.
"""

import pkgutil

# Run from a source checkout (``python -m pytest`` in the repository root puts it first on
# sys.path), this package has no compiled modules: also look in the installed copy, so
# ``fmae._C`` is found there.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
