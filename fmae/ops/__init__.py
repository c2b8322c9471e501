"""FMAE's kernels, one door each: ``fmae.ops.<op>(..., backend="auto")``.

Every op has a plain-torch reference (``<op>_reference``) and fast paths (C++ on CPU,
CUDA and Triton on GPU) chosen in :mod:`fmae.ops._backend`. The ops are registered with
``torch.library`` so autograd and ``torch.compile`` see them.
"""

from fmae.ops._backend import available
from fmae.ops.attention import attention, attention_reference
from fmae.ops.decoder_input import decoder_input, decoder_input_reference
from fmae.ops.region_histogram import region_histogram, region_histogram_reference, token_labels
from fmae.ops.tokens import (
    gather_tokens,
    gather_tokens_reference,
    scatter_tokens,
    scatter_tokens_reference,
    visible_index,
)

__all__ = [
    "attention",
    "attention_reference",
    "available",
    "decoder_input",
    "decoder_input_reference",
    "gather_tokens",
    "gather_tokens_reference",
    "region_histogram",
    "region_histogram_reference",
    "scatter_tokens",
    "scatter_tokens_reference",
    "token_labels",
    "visible_index",
]
