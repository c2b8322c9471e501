"""Other implementations' checkpoints in and out of FMAE.

- in: Hugging Face ``transformers`` VideoMAE folders (:mod:`~fmae.interop.hf`), the
  original VideoMAE / VideoMAE V2 code's checkpoints (:mod:`~fmae.interop.videomae`),
  MARLIN's (:mod:`~fmae.interop.marlin`); :func:`read_source` detects which
  (:mod:`~fmae.interop.detect`) and returns an FMAE model that computes what its source
  computes, with notes on what it inferred or dropped;
- out: FMAE's weights (:mod:`fmae.weights`) or a Hugging Face folder (:func:`write_hf`);
  :func:`convert` (:mod:`~fmae.interop.convert`) is the whole job of
  ``python -m fmae.convert``.

Pickled files are read with ``torch.load(weights_only=True)`` (:mod:`~fmae.interop.safe_load`):
reading a checkpoint never runs code from it.
"""

from fmae.interop.assemble import Converted, Overrides
from fmae.interop.convert import ConvertConfig, ConvertResult, convert
from fmae.interop.detect import FORMATS, read_source
from fmae.interop.hf import read_hf, write_hf

__all__ = [
    "FORMATS",
    "ConvertConfig",
    "ConvertResult",
    "Converted",
    "Overrides",
    "convert",
    "read_hf",
    "read_source",
    "write_hf",
]
