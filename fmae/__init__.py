"""FMAE: a facial masked autoencoder for self-supervised engagement recognition.

Data flows one way: ``data`` → ``face`` → ``masking`` → ``model`` → ``losses`` →
``train`` / ``probe``; ``fmae.ops`` (the kernels) sits below all of them.
"""

__version__ = "0.1.0"
